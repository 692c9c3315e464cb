-- Regression: a daemon took one of the slots of opts.limit, so with limit = 1
-- a daemon spawned first made the next g:spawn wait for ever (the daemon is
-- only cancelled once the main work is done, and the main work could not start).
local tether = require("tether")

describe("a daemon in a group with a limit", function()
  it("does not take a slot: with limit = 1 the main task still runs", function()
    local ran = false
    tether.run(function()
      tether.fail_after(5, function()
        tether.with_group({ limit = 1 }, function(g)
          g:spawn({ daemon = true }, tether.sleep_forever)
          g:spawn(function() ran = true end)
        end)
      end)
    end)
    assert.is_true(ran)
  end)

  it("never waits for a slot itself, and the limit still bounds the main work", function()
    local running, most, daemons = 0, 0, 0
    tether.run(function()
      tether.with_group({ limit = 2 }, function(g)
        for _ = 1, 4 do
          g:spawn(function()
            running = running + 1
            most = math.max(most, running)
            tether.sleep(0.01)
            running = running - 1
          end)
        end
        for _ = 1, 3 do   -- the group is full: a daemon spawns at once anyway
          g:spawn({ daemon = true }, function()
            daemons = daemons + 1
            tether.sleep_forever()
          end)
        end
      end)
    end)
    assert.are.equal(2, most)
    assert.are.equal(3, daemons)
  end)
end)
