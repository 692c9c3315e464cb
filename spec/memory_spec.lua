-- Memory: tasks that finished hold nothing once joined (contract section 5;
-- the core issue's 100,000-task criterion).  Measured with Lua's own heap
-- count after full collections: RSS says what malloc keeps, not what tether does.
local tether = require("tether")

local function heap_kb()
  collectgarbage()
  collectgarbage()
  return collectgarbage("count")
end

describe("memory", function()
  it("returns near where it started after 100,000 tasks are spawned into one group and joined", function()
    local before = heap_kb()
    local done = 0
    tether.run(function()
      tether.with_group(function(g)
        for _ = 1, 100000 do
          g:spawn(function() tether.sleep(0); done = done + 1 end)
        end
      end)
    end)
    local after = heap_kb()
    assert.are.equal(100000, done)
    -- while they ran the heap held well over 100 MB; afterwards only a few KB
    -- may stay (interned strings, a grown registry table part)
    assert.is_true(after - before < 256, ("heap grew by %.0f KB"):format(after - before))
  end)

  it("does not grow over many runs with failures, cancellations and timeouts", function()
    local function one_run()
      tether.run(function()
        pcall(tether.with_group, function(g)
          for i = 1, 200 do
            g:spawn(function()
              tether.move_on_after(0, tether.sleep, 1)
              if i % 50 == 0 then error({ i = i }) end
              tether.sleep(1)
            end)
          end
        end)
      end)
    end
    for _ = 1, 20 do one_run() end          -- warm up: caches, interned strings, table sizes
    local growth = {}
    for w = 1, 3 do
      local before = heap_kb()
      for _ = 1, 20 do one_run() end
      growth[w] = heap_kb() - before
    end
    -- a leak grows in every window; a one-off resize of some table does not
    local least = math.min(growth[1], growth[2], growth[3])
    assert.is_true(least < 8, ("heap grew in every window of 20 runs: %.0f, %.0f, %.0f KB")
      :format(growth[1], growth[2], growth[3]))
  end)
end)
