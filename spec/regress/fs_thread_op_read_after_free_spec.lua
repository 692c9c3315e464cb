-- Regression: the scheduler reads the op a task waited on after resuming it
-- (ts_op_release in ts_step, after the continuation and whatever the task runs
-- next up to its next yield). tether.fs requests and tether.thread works were
-- freed inside their continuation, and the op of a waiting limiter:acquire()
-- lived in the guard userdata, which the task could drop and the GC free in
-- that same stretch: heap-use-after-free under `make check`. Requests and
-- waits now carry a hold of their own that the task keeps until then.
-- The case allocates and collects right after each call, in the same resume,
-- so that freed memory is reused (ASan reports it; a plain build may crash).
local tether = require("tether")

describe("an fs request, a thread work and a limiter wait", function()
  it("stay valid until the scheduler is done with them", function()
    local dir = os.tmpname()
    local n = tether.run(function()
      local n = 0
      for _ = 1, 50 do
        local st = tether.fs.stat(dir)
        local junk = {}
        for i = 1, 200 do junk[i] = { i } end
        collectgarbage()
        n = n + st.size
        n = n + tether.thread.run(function(x) return x end, 0)
        collectgarbage()
      end
      local lim = tether.thread.limiter
      local old = lim.total
      lim.total = 1
      tether.with_group(function(g)
        local first = lim:acquire()
        g:spawn(function()
          lim:acquire()                 -- waits; its guard is dropped at once
          collectgarbage()
          collectgarbage()
          lim:release()
        end)
        tether.sleep(0.01)
        first:release()
      end)
      lim.total = old
      return n
    end)
    os.remove(dir)
    assert.equal(0, n)
  end)
end)
