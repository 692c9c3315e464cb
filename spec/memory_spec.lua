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
    for _ = 1, 5 do one_run() end           -- warm up: caches, interned strings
    local before = heap_kb()
    for _ = 1, 50 do one_run() end
    local after = heap_kb()
    assert.is_true(after - before < 64, ("heap grew by %.0f KB over 50 runs"):format(after - before))
  end)
end)
