-- Timeouts and the clock: move_on_after, fail_after, cancel_scope deadlines, now, sleep precision (contract §2).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local is_cancelled = support.is_cancelled

-- Cases that wait for a timeout run on the virtual clock (contract §8): they take
-- no real time and cannot flake on a loaded machine. Cases about the real clock's
-- precision (sleep wakes no earlier than asked, deadlines after CPU-bound work)
-- run on the real one.
local VIRTUAL = { clock = "virtual" }

describe("timeouts", function()
  describe("move_on_after", function()
    it("returns true and every result (nils included) when fn finishes in time", function()
      local r = tether.run(VIRTUAL, function()
        return table.pack(tether.move_on_after(5, function(a, b)
          tether.sleep(0.001)
          return a, nil, b
        end, "x", "y"))
      end)
      assert.equal(4, r.n)
      assert.equal(true, r[1])
      assert.equal("x", r[2])
      assert.is_nil(r[3])
      assert.equal("y", r[4])
    end)

    it("returns false when the deadline cancels fn, and the caller carries on", function()
      local r, reached, elapsed = tether.run(VIRTUAL, function()
        local t0, reached = tether.now(), false
        local r = tether.move_on_after(0.02, function()
          tether.sleep(10)
          reached = true
          return "no"
        end)
        tether.checkpoint()
        tether.sleep(0.001)
        return r, reached, tether.now() - t0
      end)
      assert.equal(false, r)
      assert.is_false(reached)
      assert.is_true(elapsed >= 0.02 - 1e-6, "fired early: " .. elapsed)
      assert.is_true(elapsed < 5, "fired late: " .. elapsed)
    end)

    it("cancels a whole task group under it when the deadline passes", function()
      local r = tether.run(VIRTUAL, function()
        local tasks, cleaned = {}, 0
        local res = tether.move_on_after(0.02, function()
          tether.with_group(function(g)
            for i = 1, 3 do
              tasks[i] = g:spawn(function()
                local ok, e = pcall(tether.sleep, 10)
                if is_cancelled(e) then cleaned = cleaned + 1 end
                error(e)
              end)
            end
          end)
          return "group finished"
        end)
        return { res = res, cleaned = cleaned, c1 = tasks[1]:cancelled(), c3 = tasks[3]:cancelled() }
      end)
      assert.same({ res = false, cleaned = 3, c1 = true, c3 = true }, r)
    end)

    it("lets an error from fn through unchanged", function()
      local boom = { "my own error" }
      local e = tether.run(VIRTUAL, function()
        local ok, e = pcall(tether.move_on_after, 5, function() error(boom) end)
        assert(not ok)
        return e
      end)
      assert.equal(boom, e)
    end)

    it("returns true when the deadline passed but fn finished without another checkpoint", function()
      local r = tether.run(VIRTUAL, function()
        return table.pack(tether.move_on_after(0.01, function()
          tether.shield(function() tether.sleep(0.05) end)
          return "finished"
        end))
      end)
      assert.same({ n = 2, true, "finished" }, r)
    end)

    it("measures its deadline from when it is called, even after CPU-bound work", function()
      local elapsed = tether.run(function()
        local stop = os.clock() + 0.03
        while os.clock() < stop do end -- no checkpoint: the loop's cached time goes stale
        local t0 = tether.now()
        tether.move_on_after(0.05, function() tether.sleep(10) end)
        return tether.now() - t0
      end)
      assert.is_true(elapsed >= 0.05 - 1e-6, "fired early: " .. elapsed)
      assert.is_true(elapsed < 5)
    end)

    it("with math.huge never fires", function()
      local ok, v = tether.run(VIRTUAL, function()
        return tether.move_on_after(math.huge, function() tether.sleep(0.001); return "v" end)
      end)
      assert.is_true(ok)
      assert.equal("v", v)
    end)

    it("with 0 seconds cancels at fn's first checkpoint", function()
      local r, before, after = tether.run(VIRTUAL, function()
        local before, after = false, false
        local r = tether.move_on_after(0, function()
          before = true
          tether.checkpoint()
          after = true
        end)
        return r, before, after
      end)
      assert.equal(false, r)
      assert.is_true(before)
      assert.is_false(after)
    end)
  end)

  describe("fail_after", function()
    it("returns fn's results when fn finishes in time", function()
      local r = tether.run(VIRTUAL, function()
        return table.pack(tether.fail_after(5, function(a)
          tether.sleep(0.001)
          return a, nil, 3
        end, 1))
      end)
      assert.equal(3, r.n)
      assert.equal(1, r[1])
      assert.is_nil(r[2])
      assert.equal(3, r[3])
    end)

    it("raises a TimeoutError (a tether.Error, not a Cancelled) at the deadline", function()
      local e, elapsed, reached = tether.run(VIRTUAL, function()
        local t0, reached = tether.now(), false
        local ok, e = pcall(tether.fail_after, 0.02, function()
          tether.sleep(10)
          reached = true
        end)
        assert(not ok, "fail_after returned instead of raising")
        tether.checkpoint() -- the caller is not left cancelled
        return e, tether.now() - t0, reached
      end)
      assert.is_true(tether.TimeoutError:is(e))
      assert.is_true(tether.Error:is(e))
      assert.is_false(tether.Cancelled:is(e))
      assert.matches("^TimeoutError", tostring(e))
      assert.is_false(reached)
      assert.is_true(elapsed >= 0.02 - 1e-6, "fired early: " .. elapsed)
      assert.is_true(elapsed < 5, "fired late: " .. elapsed)
    end)

    it("with a deadline in the past raises TimeoutError at fn's first checkpoint", function()
      local e = tether.run(VIRTUAL, function()
        local ok, e = pcall(tether.fail_after, 0, function() tether.checkpoint() end)
        return e
      end)
      assert.is_true(tether.TimeoutError:is(e))
    end)

    it("lets an error from fn through unchanged", function()
      local boom = setmetatable({}, { __tostring = function() return "boom" end })
      local e = tether.run(VIRTUAL, function()
        local ok, e = pcall(tether.fail_after, 5, function() tether.checkpoint(); error(boom) end)
        return e
      end)
      assert.equal(boom, e)
    end)

    it("does not raise TimeoutError when an enclosing scope's shorter deadline fires first", function()
      local r, escaped = tether.run(VIRTUAL, function()
        local escaped
        local r = tether.move_on_after(0.02, function()
          local ok, e = pcall(tether.fail_after, 60, function() tether.sleep(10) end)
          escaped = e
          error(e)
        end)
        return r, escaped
      end)
      assert.equal(false, r)
      assert.is_true(is_cancelled(escaped))
      assert.is_false(tether.TimeoutError:is(escaped))
    end)

    it("raises its TimeoutError through an enclosing move_on_after whose deadline is later", function()
      local e = tether.run(VIRTUAL, function()
        local ok, e = pcall(tether.move_on_after, 60, function()
          tether.fail_after(0.02, function() tether.sleep(10) end)
        end)
        return e
      end)
      assert.is_true(tether.TimeoutError:is(e))
    end)

    it("an inner move_on_after expiring first does not trip the outer fail_after", function()
      local a, b, c = tether.run(VIRTUAL, function()
        return tether.fail_after(60, function()
          local r = tether.move_on_after(0.01, function() tether.sleep(10) end)
          return r, "outer", "ok"
        end)
      end)
      assert.equal(false, a)
      assert.equal("outer", b)
      assert.equal("ok", c)
    end)

    it("a TimeoutError in a child task fails its group like any ordinary error", function()
      local eg = tether.run(VIRTUAL, function()
        local ok, eg = pcall(tether.with_group, function(g)
          g:spawn({ name = "slowpoke" }, function()
            tether.fail_after(0.01, function() tether.sleep(10) end)
          end)
        end)
        return eg
      end)
      assert.is_true(tether.ErrorGroup:is(eg))
      assert.equal(1, eg.errors.n)
      assert.is_true(tether.TimeoutError:is(eg.errors[1]))
    end)
  end)

  describe("cancel_scope", function()
    it("runs fn with a timeout: true and results in time, false when it expires", function()
      local r = tether.run(VIRTUAL, function()
        local r = {}
        local fast = tether.cancel_scope({ timeout = 5 })
        r.fast = table.pack(fast:run(function(x) tether.sleep(0.001); return x, "y" end, "x"))
        r.fast_called, r.fast_caught = fast.cancel_called, fast.cancelled_caught
        local slow = tether.cancel_scope({ timeout = 0.02 })
        r.slow = table.pack(slow:run(function() tether.sleep(10); return "late" end))
        r.slow_called, r.slow_caught = slow.cancel_called, slow.cancelled_caught
        return r
      end)
      assert.same({ n = 3, true, "x", "y" }, r.fast)
      assert.is_false(r.fast_called)
      assert.is_false(r.fast_caught)
      assert.equal(false, r.slow[1])
      assert.is_true(r.slow_called)
      assert.is_true(r.slow_caught)
    end)

    it("counts a timeout from run, not from creation", function()
      local d, t_run, t_end = tether.run(VIRTUAL, function()
        local scope = tether.cancel_scope({ timeout = 0.3 })
        tether.sleep(0.1)
        local t_run = tether.now()
        local d
        scope:run(function() d = scope.deadline end)
        return d, t_run, tether.now()
      end)
      assert.is_number(d)
      assert.is_true(d >= t_run + 0.3 - 0.01, ("deadline %f is not ~run time %f + 0.3"):format(d, t_run))
      assert.is_true(d <= t_end + 0.3 + 0.01, ("deadline %f is later than %f + 0.3"):format(d, t_end))
    end)

    it("takes an absolute deadline on the tether.now() clock", function()
      local r, elapsed = tether.run(VIRTUAL, function()
        local t0 = tether.now()
        local r = tether.cancel_scope({ deadline = t0 + 0.03 }):run(function() tether.sleep(10) end)
        return r, tether.now() - t0
      end)
      assert.equal(false, r)
      assert.is_true(elapsed >= 0.03 - 1e-6, "fired early: " .. elapsed)
      assert.is_true(elapsed < 5)
    end)

    it("with a deadline in the past cancels at the first checkpoint", function()
      local r = tether.run(VIRTUAL, function()
        local scope = tether.cancel_scope({ deadline = tether.now() - 1 })
        local r = { before = false, after = false }
        r.res = scope:run(function()
          r.before = true
          tether.checkpoint()
          r.after = true
        end)
        r.called, r.caught = scope.cancel_called, scope.cancelled_caught
        return r
      end)
      assert.same({ before = true, after = false, res = false, called = true, caught = true }, r)
    end)

    it("has no deadline unless one is given", function()
      local d = tether.run(VIRTUAL, function()
        local scope = tether.cancel_scope({})
        local d
        scope:run(function() d = scope.deadline end)
        return d
      end)
      assert.is_true(d == nil or d == math.huge, "deadline of a scope without one: " .. tostring(d))
    end)

    it("lets fn move its own deadline closer while running", function()
      local r, elapsed = tether.run(VIRTUAL, function()
        local t0 = tether.now()
        local scope = tether.cancel_scope({})
        local r = scope:run(function()
          scope.deadline = tether.now() + 0.02
          tether.sleep(10)
        end)
        return r, tether.now() - t0
      end)
      assert.equal(false, r)
      assert.is_true(elapsed < 5)
    end)

    it("lets fn push its own deadline further out while running", function()
      local r, v = tether.run(VIRTUAL, function()
        local scope = tether.cancel_scope({ timeout = 0.05 })
        return scope:run(function()
          scope.deadline = tether.now() + 60
          tether.sleep(0.15)
          return "survived"
        end)
      end)
      assert.is_true(r)
      assert.equal("survived", v)
    end)

    it("wakes a blocked task when another task sets the deadline", function()
      local r, elapsed, d = tether.run(VIRTUAL, function()
        local t0 = tether.now()
        local scope = tether.cancel_scope({})
        local r, started = nil, false
        tether.with_group(function(g)
          g:spawn(function()
            r = scope:run(function() started = true; tether.sleep(10) end)
          end)
          while not started do tether.checkpoint() end
          tether.sleep(0.01)
          scope.deadline = tether.now() + 0.01
        end)
        return r, tether.now() - t0, scope.deadline
      end)
      assert.equal(false, r)
      assert.is_true(elapsed < 5, "the new deadline did not wake the sleeper: " .. elapsed)
      assert.is_number(d)
    end)

    it("runs only once", function()
      local first, ok, err = tether.run(VIRTUAL, function()
        local scope = tether.cancel_scope({ timeout = 5 })
        local first = scope:run(function() return 1 end)
        local ok, err = pcall(scope.run, scope, function() return 2 end)
        return first, ok, err
      end)
      assert.is_true(first)
      assert.is_false(ok)
      local msg = tostring(err)
      assert.is_truthy(msg:find("run", 1, true) or msg:find("scope", 1, true), msg)
    end)

    it("lets an error from fn through unchanged and records no cancellation", function()
      local boom = {}
      local e, called, caught = tether.run(VIRTUAL, function()
        local scope = tether.cancel_scope({ timeout = 5 })
        local ok, e = pcall(scope.run, scope, function() tether.checkpoint(); error(boom) end)
        return e, scope.cancel_called, scope.cancelled_caught
      end)
      assert.equal(boom, e)
      assert.is_false(called)
      assert.is_false(caught)
    end)
  end)

  describe("the clock", function()
    it("tether.now() is a float in seconds that never goes backwards", function()
      local samples = tether.run(function()
        local s = { tether.now() }
        for _ = 1, 5 do
          tether.checkpoint()
          s[#s + 1] = tether.now()
        end
        tether.sleep(0.02)
        s[#s + 1] = tether.now()
        return s
      end)
      for i, v in ipairs(samples) do
        assert.equal("float", math.type(v))
        if i > 1 then assert.is_true(v >= samples[i - 1], "now() went backwards") end
      end
      local span = samples[#samples] - samples[1]
      assert.is_true(span >= 0.02 - 1e-6 and span < 5, "a 20 ms sleep measured " .. span .. " s")
    end)

    -- busy: seconds of CPU-bound work before each sleep (none when absent)
    for _, case in ipairs({
      { "sleep(0.05) wakes no earlier than 50 ms and not far later" },
      { "sleep(0.05) after CPU-bound work still wakes no earlier than 50 ms", busy = 0.03 },
    }) do
      local title, busy = case[1], case.busy
      it(title, function()
        local times = tether.run(function()
          local times = {}
          for i = 1, 3 do
            if busy then
              local stop = os.clock() + busy
              while os.clock() < stop do end
            end
            local t0 = tether.now()
            tether.sleep(0.05)
            times[i] = tether.now() - t0
          end
          return times
        end)
        for _, dt in ipairs(times) do
          assert.is_true(dt >= 0.05 - 1e-6, "woke early: " .. dt)
          assert.is_true(dt < 1, "woke very late: " .. dt)
        end
      end)
    end

    it("concurrent sleeps each wake no earlier than asked", function()
      local times = tether.run(function()
        local times = {}
        tether.with_group(function(g)
          for i = 1, 5 do
            g:spawn(function()
              local t0 = tether.now()
              tether.sleep(0.01 * i)
              times[i] = { asked = 0.01 * i, got = tether.now() - t0 }
            end)
          end
        end)
        return times
      end)
      assert.equal(5, #times)
      for _, t in ipairs(times) do
        assert.is_true(t.got >= t.asked - 1e-6, ("asked %f, woke after %f"):format(t.asked, t.got))
        assert.is_true(t.got < t.asked + 1, ("asked %f, woke after %f"):format(t.asked, t.got))
      end
    end)

    it("leaves no timer behind for scopes that finished before their deadline", function()
      local timers = tether.run(VIRTUAL, function()
        for _ = 1, 2000 do tether.move_on_after(60, tether.checkpoint) end
        for _ = 1, 500 do tether.cancel_scope({ timeout = 60 }):run(function() end) end
        for _ = 1, 200 do pcall(tether.fail_after, 60, function() error("x") end) end
        return tether.stats().timers
      end)
      assert.equal(0, timers)
    end)

    it("huge but finite durations and deadlines never fire early", function()
      local r = tether.run(VIRTUAL, function()
        local r = {}
        r.moa = table.pack(tether.move_on_after(1e300, function() tether.sleep(0.01); return "a" end))
        r.fa = tether.fail_after(2 ^ 64, function() tether.sleep(0.01); return "b" end)
        r.dl = table.pack(tether.cancel_scope({ deadline = 1e308 }):run(function() tether.sleep(0.01); return "c" end))
        local t0 = tether.now()
        r.sleep = tether.move_on_after(0.02, function() tether.sleep(1e300) end)
        r.sleep_until = tether.move_on_after(0.02, function() tether.sleep_until(2 ^ 63) end)
        r.elapsed = tether.now() - t0
        return r
      end)
      assert.same({ n = 2, true, "a" }, r.moa)
      assert.equal("b", r.fa)
      assert.same({ n = 2, true, "c" }, r.dl)
      assert.equal(false, r.sleep)
      assert.equal(false, r.sleep_until)
      assert.is_true(r.elapsed >= 0.04 - 1e-6 and r.elapsed < 5, "elapsed " .. r.elapsed)
    end)

    it("sleep_until a past time is still a checkpoint: it yields and raises Cancelled in a cancelled scope", function()
      local log, r = tether.run(VIRTUAL, function()
        local log = {}
        tether.with_group(function(g)
          g:spawn(function() log[#log + 1] = "child" end)
          log[#log + 1] = "before"
          tether.sleep_until(tether.now() - 1)
          log[#log + 1] = "after"
        end)
        local scope = tether.cancel_scope({})
        local r = scope:run(function()
          scope:cancel()
          tether.sleep_until(tether.now() - 1)
          return "not raised"
        end)
        return log, r
      end)
      assert.same({ "before", "child", "after" }, log)
      assert.equal(false, r)
    end)

    it("sleep_until(t) wakes no earlier than t", function()
      local target, woke = tether.run(function()
        local target = tether.now() + 0.05
        tether.sleep_until(target)
        return target, tether.now()
      end)
      assert.is_true(woke >= target - 1e-6, "woke early by " .. (target - woke))
      assert.is_true(woke < target + 1)
    end)
  end)
end)
