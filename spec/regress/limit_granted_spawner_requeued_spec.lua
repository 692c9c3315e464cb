-- Regression: under opts.limit, a spawner woken with a freed slot queued
-- again behind the other waiters instead of spawning, so when several tasks
-- waited to spawn into a full group, tether.run ended in a deadlock.
local tether = require("tether")

describe("a spawner waiting for a slot under opts.limit", function()
  it("spawns as soon as it is handed a slot, even with other spawners waiting", function()
    local finished, most, running = 0, 0, 0
    tether.run(function()
      tether.with_group({ limit = 2 }, function(g)
        tether.with_group(function(helpers)
          for _ = 1, 3 do
            helpers:spawn(function()
              for _ = 1, 3 do
                g:spawn(function()
                  running = running + 1
                  most = math.max(most, running)
                  tether.checkpoint()
                  running = running - 1
                  finished = finished + 1
                end)
              end
            end)
          end
        end)
      end)
    end)
    assert.are.equal(9, finished)
    assert.is_true(most <= 2)
  end)
end)
