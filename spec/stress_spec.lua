-- Randomized task trees (spec/stress/tree.lua): no orphans, every error reported exactly once, no Cancelled escapes, flat memory.
--
-- The trees are seeded: STRESS_SEED=n picks another seed (default fixed).  A
-- failing tree is named by its tree seed, with the command that replays it.
-- The long soak is spec/stress/soak.lua (`make stress`).
local tether = require("tether")

local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path
local tree = require("stress.tree")

local ROOT = SPEC_DIR:match("^(.*)/spec$") or "."
local BUILD = os.getenv("TETHER_BUILD") or "build"
local SEED = math.tointeger(tonumber(os.getenv("STRESS_SEED") or "")) or 20261125

-- Runs `n` trees with seeds base+1 .. base+n; returns totals and the failure texts.
local function run_trees(base, n, gen_opts, on_tree)
  local totals = { trees = 0, tasks = 0, raised = 0, reported = 0, caught = 0 }
  local failures = {}
  local replay_flags = (gen_opts.timers == false and " --no-timers" or "") .. (gen_opts.procs and " --procs" or "")
  if gen_opts.max_tasks then replay_flags = replay_flags .. " --max-tasks " .. gen_opts.max_tasks end
  for i = 1, n do
    local tseed = base + i
    local r = tree.run(tree.generate(tseed, gen_opts))
    totals.trees = totals.trees + 1
    totals.tasks = totals.tasks + r.tasks
    totals.raised = totals.raised + r.raised
    totals.reported = totals.reported + r.reported
    totals.caught = totals.caught + r.caught
    if #r.violations > 0 and #failures < 5 then
      local shown = {}
      for k = 1, math.min(#r.violations, 6) do shown[k] = "    " .. r.violations[k] end
      failures[#failures + 1] = ("tree seed %d (replay: lua5.4 spec/stress/soak.lua --replay %d%s):\n%s")
        :format(tseed, tseed, replay_flags, table.concat(shown, "\n"))
    end
    if on_tree then on_tree(i) end
  end
  return totals, failures
end

-- Least-squares slope of ys over xs.
local function slope(xs, ys)
  local n, sx, sy, sxx, sxy = #xs, 0, 0, 0, 0
  for i = 1, n do
    sx, sy = sx + xs[i], sy + ys[i]
    sxx, sxy = sxx + xs[i] * xs[i], sxy + xs[i] * ys[i]
  end
  return (n * sxy - sx * sy) / (n * sxx - sx * sx)
end

describe("randomized task trees", function()
  it("with real processes cancelled at random: the ledger holds, no zombie, nothing left alive", function()
    -- Short real commands (true, sleep, cat fed a string, a group with a
    -- grandchild) inside the trees, cancelled by whatever cancels their task.
    local base = SEED * 1000 + 700000
    local totals, failures = run_trees(base, 40, { procs = true, max_tasks = 60 })
    assert(#failures == 0, ("seed %d: %d trees failed, the first ones:\n%s"):format(SEED, #failures,
      table.concat(failures, "\n")))
    assert.are.equal(totals.raised, totals.reported + totals.caught)
  end)

  it("without timers: no orphans, every error reported exactly once, no Cancelled escapes, nothing left alive", function()
    -- Timer-free trees (sleeps are checkpoints, deadlines are 0 or far away)
    -- run in this process: every tree calls tether.run, and tether.stats()
    -- is checked after each one.
    local base = SEED * 1000
    local totals, failures = run_trees(base, 300, { timers = false })
    assert(#failures == 0, ("seed %d: %d trees failed, the first ones:\n%s"):format(SEED, #failures,
      table.concat(failures, "\n")))
    assert.are.equal(totals.raised, totals.reported + totals.caught)
    -- the generator really exercised things (not a vacuous pass)
    assert.is_true(totals.tasks > 2000, "only " .. totals.tasks .. " tasks ran")
    assert.is_true(totals.raised > 300, "only " .. totals.raised .. " errors raised")
    assert.is_true(totals.caught > 10, "only " .. totals.caught .. " errors caught by the test")
  end)

  it("keeps the Lua heap flat over many trees", function()
    local xs, ys = {}, {}
    local function full_gc()
      collectgarbage("collect")
      collectgarbage("collect")
      return collectgarbage("count")
    end
    run_trees(SEED * 1000 + 500000, 100, { timers = false, max_tasks = 40 }) -- warm-up
    local _, failures = run_trees(SEED * 1000 + 600000, 600, { timers = false, max_tasks = 40 }, function(i)
      if i % 25 == 0 then
        xs[#xs + 1] = i
        ys[#ys + 1] = full_gc()
      end
    end)
    assert(#failures == 0, table.concat(failures, "\n"))
    local kb_per_1000 = slope(xs, ys) * 1000
    -- A leak of one small table per tree would be ~50 KB per 1000 trees.
    assert(kb_per_1000 < 25, ("the Lua heap grows by %.1f KB per 1000 trees (%.0f KB -> %.0f KB)")
      :format(kb_per_1000, ys[1], ys[#ys]))
  end)

  it("with real sleeps and deadlines, in a child process: passes, and never hangs or crashes", function()
    -- A child under `timeout`, so that a hang or a crash of the core fails
    -- this case (with the seed) instead of stopping the suite.
    local cmd = ("cd '%s' && TETHER_BUILD='%s' timeout 90 lua5.4 spec/stress/soak.lua %d 80 --trees 400 2>&1")
      :format(ROOT, BUILD, SEED)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("a")
    local _, _, status = p:close()
    local report = out:sub(-3000)
    if status == 124 then
      error("the soak child hung (killed by timeout after 90 s); its output:\n" .. report)
    end
    assert(status == 0, ("the soak child exited with status %s; its output:\n%s"):format(tostring(status), report))
    local final = out:match("soak report.*$") or ""
    local trees = tonumber(final:match("trees%s+(%d+) %(0 failed%)"))
    local raised = tonumber(final:match("errors raised%s+(%d+)"))
    local accounted = tonumber(final:match("errors reported%s+(%d+)"))
    assert(trees == 400, "the soak did not run its 400 trees:\n" .. report)
    assert(raised and raised == accounted, "errors raised ~= reported:\n" .. report)
  end)

  it("replays a tree from its seed (same plan)", function()
    local a = tree.describe(tree.generate(SEED + 17))
    local b = tree.describe(tree.generate(SEED + 17))
    assert.are.equal(a, b)
    local r = tree.run(tree.generate(SEED + 17, { timers = false }))
    assert.are.same({}, r.violations)
  end)
end)
