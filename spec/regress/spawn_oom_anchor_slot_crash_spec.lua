-- Regression: a segfault when g:spawn ran out of memory while anchoring the
-- new task.  tk_task_new did `lua_rawseti(L, -2, ++S->nanchor)`: the count
-- went up before the store, so when the anchor array could not grow the
-- count named an empty slot; the next task to finish moved "the last anchor"
-- into its own slot: lua_touserdata(nil)->slot, a NULL write in
-- ts_task_unanchor.  Found by spec/alloc_spec.lua (scenario spawn).
-- Each point runs in a fresh build/alloc-harness, so a crash fails the case.
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/regress/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path
local harness = require("alloc.run")

local CODE = [[
local tether = require("tether")
local k = math.tointeger(tonumber((...)))
local spawned = {}
local ok, err = pcall(tether.run, function()
  tether.with_group(function(g)
    pcall(function()
      alloc_fail_after(k)
      for i = 1, 30 do spawned[i] = g:spawn(function() end) end
    end)
    alloc_disarm()
  end)
end)
for i, t in ipairs(spawned) do assert(t:done(), "task " .. i .. " is not done") end
local s = tether.stats()
assert(s.tasks == 0 and s.timers == 0 and s.handles == 0, "something left alive")
io.write("hits=", alloc_total_hits(), " ", tostring(ok), "\n")
]]

describe("g:spawn running out of memory while anchoring the task", function()
  setup(harness.ensure)

  it("raises 'not enough memory' in the spawner and never crashes, whichever allocation fails", function()
    local tried = 0
    -- the anchor array grows at 1, 2, 4, 8, 16 ... tasks: the first 60
    -- allocations cover several growths (the broken core crashed at k = 6,
    -- 11, 20 and 37)
    for k = 1, 60 do
      local r = harness.run_code(CODE, { k })
      assert(r.signal == nil, ("k=%d: the harness was killed by signal %d:\n%s"):format(k, r.signal or 0, r.out))
      assert(r.exit == 0, ("k=%d: exit status %s:\n%s"):format(k, tostring(r.exit), r.out))
      local hits = tonumber(r.out:match("hits=(%d+)"))
      assert(hits, "no result line: " .. r.out)
      if hits == 0 then break end
      tried = tried + 1
    end
    assert.is_true(tried > 20)
  end)
end)
