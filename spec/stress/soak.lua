-- spec/stress/soak.lua: the long soak: random task trees for a while, then a report (make stress).
--
--   lua5.4 spec/stress/soak.lua [SEED [DURATION_SECONDS]] [--trees N] [--no-timers] [--procs] [--max-tasks N]
--   SEED=n DURATION=s lua5.4 spec/stress/soak.lua        (what `make stress` passes)
--   lua5.4 spec/stress/soak.lua --replay TREE_SEED       (one tree: its plan, then its result)
--
-- Tree i of a soak with seed SEED has the tree seed SEED * 1000000 + i; a
-- failing tree prints its tree seed and the command that replays it.
-- Defaults: SEED from the clock, DURATION 60 s; --trees stops earlier,
-- --procs adds short real commands (tether.process.run) cancelled at random.
-- --no-timers makes trees that never wait for a timer (sleeps are
-- checkpoints), --max-tasks bounds each tree (default 150).  Prints progress
-- every 10 s and a final report: trees, tasks, errors raised and reported
-- (equal, or the soak fails), the memory slope (least squares, judged over
-- at least 1,000 trees).  Exits 1 if any tree failed or the memory grew.
-- TETHER_BUILD=dir uses another build (build-asan).
local here = (arg and arg[0] or "spec/stress/soak.lua"):match("^(.*)/[^/]*$") or "."
local root = here .. "/../.."
local build = os.getenv("TETHER_BUILD") or "build"
if build:sub(1, 1) ~= "/" then build = root .. "/" .. build end
package.path = here .. "/../?.lua;" .. root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local tether = require("tether")
local tree = require("stress.tree")

local function usage(msg)
  io.stderr:write("soak: ", msg, "\n",
    "usage: lua5.4 spec/stress/soak.lua [SEED [DURATION_SECONDS]] [--trees N] [--no-timers] [--procs] [--max-tasks N]\n",
    "       lua5.4 spec/stress/soak.lua --replay TREE_SEED [--no-timers] [--procs] [--max-tasks N]\n")
  os.exit(2)
end

local function int_arg(v, what)
  local n = tonumber(v)
  if not n or n ~= math.floor(n) or n < 0 then usage(what .. " must be a non-negative integer, got " .. tostring(v)) end
  return math.tointeger(n)
end

-- Arguments: positional SEED and DURATION, then flags.
local positional, flags = {}, {}
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--no-timers" then
      flags.no_timers = true
    elseif a == "--procs" then
      flags.procs = true
    elseif a == "--replay" or a == "--trees" or a == "--max-tasks" then
      if arg[i + 1] == nil then usage(a .. " needs a value") end
      flags[a:sub(3):gsub("-", "_")] = int_arg(arg[i + 1], a)
      i = i + 1
    elseif a:sub(1, 2) == "--" then
      usage("unknown option " .. a)
    else
      positional[#positional + 1] = a
    end
    i = i + 1
  end
end
local gen_opts = { timers = not flags.no_timers, max_tasks = flags.max_tasks, procs = flags.procs }
local flag_txt = (flags.no_timers and " --no-timers" or "") .. (flags.procs and " --procs" or "") ..
                 (flags.max_tasks and (" --max-tasks " .. flags.max_tasks) or "")

-- ---- one tree, for a replay ---------------------------------------------

if flags.replay then
  local plan = tree.generate(flags.replay, gen_opts)
  print(tree.describe(plan))
  local r = tree.run(plan)
  print(("\ntasks %d, groups %d, errors raised %d, reported %d, caught by the test %d"):format(
    r.tasks, r.groups, r.raised, r.reported, r.caught))
  for _, v in ipairs(r.violations) do print("VIOLATION: " .. v) end
  print(#r.violations == 0 and "tree passed" or "tree FAILED")
  os.exit(#r.violations == 0 and 0 or 1)
end

-- ---- the soak ---------------------------------------------------------------

local seed = int_arg(positional[1] or os.getenv("SEED") or (os.time() % 100000), "SEED")
local duration = tonumber(positional[2] or os.getenv("DURATION") or 60)
if not duration or duration <= 0 then usage("DURATION must be a positive number of seconds") end
local max_trees = flags.trees or math.huge

local SAMPLE_EVERY = 50        -- trees between two memory samples
local MAX_SLOPE = 20           -- KB per 1000 trees allowed (after warm-up)

local function rss_kb()
  local f = io.open("/proc/self/statm")
  if not f then return 0 end
  local _, res = f:read("n", "n")
  f:close()
  return (res or 0) * 4
end

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count")
end

print(("soak: seed %d, %g s%s%s, tether %s (build %s)"):format(seed, duration,
  max_trees < math.huge and (", at most " .. max_trees .. " trees") or "", flag_txt, tostring(tether.VERSION), build))
io.stdout:flush()

local t0 = os.time()
local clock0 = os.clock()
local function elapsed() return os.difftime(os.time(), t0) end

local totals = { trees = 0, tasks = 0, groups = 0, raised = 0, reported = 0, caught = 0, failed = 0 }
local kinds = {}
local failures = {}

-- Memory samples, reduced on the fly to least-squares sums (no growing
-- array: the soak's own bookkeeping must not show up as a slope).  The
-- first WARMUP trees are not sampled (caches and interned strings settle).
local WARMUP = 1000
local function new_fit() return { n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0 } end
local function fit_add(f, x, y)
  f.n, f.sx, f.sy = f.n + 1, f.sx + x, f.sy + y
  f.sxx, f.sxy = f.sxx + x * x, f.sxy + x * y
end
local function fit_slope(f)
  local d = f.n * f.sxx - f.sx * f.sx
  if f.n < 3 or d == 0 then return 0 end
  return (f.n * f.sxy - f.sx * f.sy) / d
end
local heap_fit, rss_fit = new_fit(), new_fit()
local heap_first, heap_last
local last_progress = os.time()
local mem0 = full_gc()

local i = 0
while elapsed() < duration and i < max_trees do
  i = i + 1
  local tseed = seed * 1000000 + i
  local plan = tree.generate(tseed, gen_opts)
  local ok, r = pcall(tree.run, plan)
  if not ok then
    r = { violations = { "the tree run itself raised: " .. tostring(r) }, tasks = 0, groups = 0, raised = 0,
          reported = 0, caught = 0, kinds = {} }
  end
  totals.trees = totals.trees + 1
  totals.tasks = totals.tasks + r.tasks
  totals.groups = totals.groups + r.groups
  totals.raised = totals.raised + r.raised
  totals.reported = totals.reported + r.reported
  totals.caught = totals.caught + r.caught
  for k, v in pairs(r.kinds) do kinds[k] = (kinds[k] or 0) + v end
  if #r.violations > 0 then
    totals.failed = totals.failed + 1
    if #failures < 20 then
      failures[#failures + 1] = tseed
      print(("FAILED tree %d (tree seed %d; replay: lua5.4 spec/stress/soak.lua --replay %d%s):"):format(
        i, tseed, tseed, flag_txt))
      for n, v in ipairs(r.violations) do
        if n > 10 then print(("  ... %d more"):format(#r.violations - 10)) break end
        print("  " .. v)
      end
      io.stdout:flush()
    end
  end
  if i % SAMPLE_EVERY == 0 and i > WARMUP then
    local kb = full_gc()
    heap_first = heap_first or kb
    heap_last = kb
    fit_add(heap_fit, i, kb)
    fit_add(rss_fit, i, rss_kb())
  end
  if os.difftime(os.time(), last_progress) >= 10 then
    last_progress = os.time()
    print(("  %4ds: %d trees, %d tasks, errors raised %d, reported %d + caught %d, lua heap %.0f KB, rss %d KB, %d failed")
      :format(elapsed(), totals.trees, totals.tasks, totals.raised, totals.reported, totals.caught,
              collectgarbage("count"), rss_kb(), totals.failed))
    io.stdout:flush()
  end
end

local kb_per_1000 = fit_slope(heap_fit) * 1000
local rss_per_1000 = fit_slope(rss_fit) * 1000
-- judged only over enough trees: a short run's slope is noise
local mem_judged = heap_fit.n >= 20
local mem_ok = not mem_judged or kb_per_1000 < MAX_SLOPE
local accounted = totals.reported + totals.caught
local kinds_txt = {}
for k, v in pairs(kinds) do kinds_txt[#kinds_txt + 1] = k .. " " .. v end
table.sort(kinds_txt)

print(("\nsoak report (seed %d, %d s, %.0f s of CPU)"):format(seed, elapsed(), os.clock() - clock0))
print(("  trees            %d (%d failed)"):format(totals.trees, totals.failed))
print(("  tasks            %d in %d groups"):format(totals.tasks, totals.groups))
print(("  errors raised    %d (%s)"):format(totals.raised, table.concat(kinds_txt, ", ")))
print(("  errors reported  %d = %d in ErrorGroups at the top + %d caught by the test's own code"):format(
  accounted, totals.reported, totals.caught))
print(("  memory           lua heap %.0f KB before the first tree, %.0f KB after tree %d, %.0f KB at the end; "
  .. "slope %.2f KB per 1000 trees (least squares over %d samples after tree %d, %s); rss slope %.1f KB per 1000 trees")
  :format(mem0, heap_first or 0, WARMUP + SAMPLE_EVERY, heap_last or full_gc(), kb_per_1000, heap_fit.n, WARMUP,
          mem_judged and ("limit " .. MAX_SLOPE) or "too few trees to judge", rss_per_1000))
if #failures > 0 then
  print("  failing tree seeds: " .. table.concat(failures, " "))
end
local pass = totals.failed == 0 and totals.raised == accounted and mem_ok
print(pass and "soak PASSED" or "soak FAILED")
os.exit(pass and 0 or 1)
