-- Regression: tasks sleeping until the same time woke in a scrambled order,
-- because each deadline was recomputed from "now" (equal deadlines must fire
-- in the order they were started).
local tether = require("tether")

describe("sleep_until with equal deadlines", function()
  it("wakes the tasks in the order they went to sleep", function()
    local order = {}
    tether.run(function()
      local at = tether.now() + 0.02
      tether.with_group(function(g)
        for i = 1, 8 do
          g:spawn(function()
            for _ = 1, i % 3 do tether.checkpoint() end -- start in a mixed order
            order[#order + 1] = { i = i, phase = "slept" }
            tether.sleep_until(at)
            order[#order + 1] = { i = i, phase = "woke" }
          end)
        end
      end)
    end)
    local slept, woke = {}, {}
    for _, e in ipairs(order) do
      if e.phase == "slept" then slept[#slept + 1] = e.i else woke[#woke + 1] = e.i end
    end
    assert.same(slept, woke)
  end)
end)
