-- Allocation failures: every allocation of the core's operations made to fail in turn, each in a fresh process.
--
-- build/alloc-harness (spec/alloc/harness.c, rule in spec/alloc/Makefile.frag;
-- built here with cc when missing or stale) embeds Lua with an allocator that
-- fails on demand.  spec/alloc/scenario.lua opens a window around one core
-- operation (spawn, group exit, ErrorGroup build, split, timer start,
-- traceback capture, catch) and makes its k-th allocation fail (and Lua's
-- retry after it).  For k = 1, 2, ... until the window no longer reaches
-- the k-th allocation, a fresh harness runs it under `timeout 20`: the run
-- must end with a "not enough memory" error where the operation ran, or
-- succeed (the failure absorbed) -- never a crash, a hang, a task or handle
-- left alive, a sibling's error lost or a wrong result.
local tether = require("tether")

local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
local BUILD = os.getenv("TETHER_BUILD") or "build"
local KMAX = 5000     -- a scenario that still reaches its k-th allocation here is broken
local BATCH = 64      -- points run per batch (two at a time)

package.path = SPEC_DIR .. "/?.lua;" .. package.path

local harness = require("alloc.run")
local sh = harness.sh

-- Run points k = from..to of `name`; returns { [k] = { exit, verdict, hits, nomem, detail, stderr } }.
local function run_points(name, from, to, errdir)
  local cmd = ("seq %d %d | TETHER_BUILD='%s' xargs -P 2 -I{} sh -c "
    .. "'out=$(timeout 20 %s spec/alloc/scenario.lua %s {} 2>%s/err.{}); "
    .. "echo \"K={} EXIT=$? $out\"'"):format(from, to, BUILD, harness.harness_cmd(), name, errdir)
  local _, out = sh(cmd)
  local res = {}
  for line in out:gmatch("[^\n]+") do
    local k, exit, rest = line:match("^K=(%d+) EXIT=(%d+) ?(.*)$")
    if k then
      k = tonumber(k)
      local r = { exit = tonumber(exit), line = rest }
      local verdict, hits, nomem, detail = rest:match("^RESULT (%a+) hits=(%d+) nomem=(%d+) count=%d+ ?(.*)$")
      r.verdict, r.hits, r.nomem, r.detail = verdict, tonumber(hits), tonumber(nomem), detail
      res[k] = r
    end
  end
  for k = from, to do
    if res[k] and (res[k].exit ~= 0 or res[k].verdict == "bad" or not res[k].verdict) then
      local f = io.open(errdir .. "/err." .. k)
      res[k].stderr = f and f:read("a") or ""
      if f then f:close() end
    end
  end
  return res
end

local function describe_failure(k, r)
  if not r then return ("k=%d: no result line"):format(k) end
  local what
  if r.exit == 124 then what = "HANG (killed by timeout 20)"
  elseif r.exit and r.exit >= 128 then what = ("CRASH (signal %d)"):format(r.exit - 128)
  elseif r.exit ~= 0 then what = ("exit status %d"):format(r.exit)
  else what = r.verdict == "bad" and ("bad: " .. (r.detail or "")) or ("no verdict: " .. r.line) end
  local err = r.stderr and r.stderr ~= "" and ("\n      stderr: " .. r.stderr:sub(1, 400):gsub("\n", "\n      ")) or ""
  return ("k=%d: %s%s"):format(k, what, err)
end

-- Every failure point of scenario `name`: returns stats and failure texts.
local function sweep(name)
  local errdir = os.tmpname()
  os.remove(errdir)
  assert(os.execute("mkdir -p '" .. errdir .. "'"))
  local stats = { points = 0, nomem = 0, absorbed = 0, bad = 0 }
  local failures = {}
  local from, done = 1, false
  while not done do
    local to = from + BATCH - 1
    local res = run_points(name, from, to, errdir)
    for k = from, to do
      local r = res[k]
      if r and r.exit == 0 and r.verdict and r.hits == 0 then
        done = true -- the k-th allocation never came: every point was tried
        break
      end
      stats.points = stats.points + 1
      if r and r.exit == 0 and r.verdict == "nomem" then
        stats.nomem = stats.nomem + 1
      elseif r and r.exit == 0 and r.verdict == "ok" then
        stats.absorbed = stats.absorbed + 1
      else
        stats.bad = stats.bad + 1
        if #failures < 8 then failures[#failures + 1] = describe_failure(k, r) end
      end
    end
    from = to + 1
    if from > KMAX then
      failures[#failures + 1] = ("still allocating after %d points: the window never ends"):format(KMAX)
      done = true
    end
  end
  os.execute("rm -rf '" .. errdir .. "'")
  return stats, failures
end

local scenarios = { "spawn", "group_exit", "errorgroup_build", "split", "timer_start", "traceback", "catch",
                    "channel", "sync", "net" }
local total_points = 0

describe("allocation failures", function()
  setup(harness.ensure)

  it("the scenarios pass in-process when nothing fails", function()
    -- stubs for the harness's functions: no failure is ever injected
    local saved = {}
    local stubs = {
      alloc_fail_after = function() end, alloc_disarm = function() return 0 end,
      alloc_count = function() return 0 end, alloc_hits = function() return 0 end,
      alloc_total_hits = function() return 0 end,
    }
    for k, v in pairs(stubs) do saved[k] = _G[k]; _G[k] = v end
    local ok, err = pcall(function()
      local sc = require("alloc.scenario")
      assert.are.same(scenarios, (function()
        local t = {}
        for _, n in ipairs(scenarios) do
          for _, m in ipairs(sc.names) do if m == n then t[#t + 1] = n end end
        end
        return t
      end)())
      for _, name in ipairs(sc.names) do
        local verdict, _, _, _, problems = sc.judge(name)
        assert(verdict == "ok", name .. ": " .. table.concat(problems, "; "))
      end
    end)
    for k in pairs(stubs) do _G[k] = saved[k] end
    assert(ok, err)
  end)

  for _, name in ipairs(scenarios) do
    it(name .. ": every failing allocation gives a memory error where it ran or is absorbed; "
       .. "no crash, hang, leak or lost error", function()
      local stats, failures = sweep(name)
      total_points = total_points + stats.points
      -- NOTE: the counts are printed only on request (TETHER_ALLOC_VERBOSE=1):
      -- make test shows busted's progress, the failures and the summary only
      if os.getenv("TETHER_ALLOC_VERBOSE") then
        io.stderr:write(("\n  alloc %-17s %4d failure points: %d surfaced as 'not enough memory', %d absorbed, %d bad "
          .. "(%d points so far)"):format(name, stats.points, stats.nomem, stats.absorbed, stats.bad, total_points))
      end
      assert(stats.points > 0, "the scenario made no allocation at all in its window")
      assert(#failures == 0, ("%s: %d of %d failure points went wrong, the first ones:\n    %s")
        :format(name, stats.bad, stats.points, table.concat(failures, "\n    ")))
      -- this case calls tether.run too, so the shared after-test check has something to see
      assert.are.equal(3, tether.run(function() return 3 end))
    end)
  end
end)
