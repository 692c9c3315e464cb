-- Randomized producer/consumer trees on channels and primitives (spec/stress/sync.lua): every value accounted for.
--
-- STRESS_SEED=n picks another base seed; a failing tree names its seed.
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path
local sync = require("stress.sync")

local SEED = math.tointeger(tonumber(os.getenv("STRESS_SEED") or "")) or 20261125

describe("randomized channel and primitive trees", function()
  it("deliver every value whose send returned exactly once (or count it as dropped by closing every receiver), never exceed a primitive, leave nothing held", function()
    local failures, totals = {}, { sent = 0, received = 0, dropped = 0, cancelled = 0, broken = 0, closed = 0 }
    local caps = {}
    for i = 1, 400 do
      local r = sync.run(SEED * 1000 + i)
      for k in pairs(totals) do totals[k] = totals[k] + r[k] end
      caps[tostring(r.capacity)] = true
      if #r.violations > 0 and #failures < 5 then
        failures[#failures + 1] = ("seed %d (capacity %s):\n    %s"):format(r.seed, tostring(r.capacity),
          table.concat(r.violations, "\n    ", 1, math.min(6, #r.violations)))
      end
    end
    assert(#failures == 0, table.concat(failures, "\n"))
    -- not a vacuous pass: every capacity ran, cancellations and closes happened
    for _, c in ipairs { "0", "1", "2", "5", "inf" } do
      assert(caps[c] or (c == "inf" and caps[tostring(math.huge)]), "capacity " .. c .. " never ran")
    end
    assert.is_true(totals.sent > 5000, "only " .. totals.sent .. " values sent")
    assert.is_true(totals.cancelled > 100, "only " .. totals.cancelled .. " cancellations seen")
    assert.is_true(totals.broken + totals.closed > 5, "closing every receiver never happened")
    assert.is_true(totals.dropped > 0, "no buffered value was ever dropped by a close")
  end)
end)
