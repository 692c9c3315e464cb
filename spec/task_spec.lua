-- Task handles: state, results, errors, wait, cancel, names (contract section 1).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local error_of, wait_until, is_cancelled = support.error_of, support.wait_until, support.is_cancelled

-- Runs body(g) in a supervisor group inside tether.run and returns the ErrorGroup
-- it raised (nil if none), so failing tasks do not disturb their siblings.
local function supervised(body)
  local eg
  tether.run(function()
    local ok, e = pcall(tether.with_group, { policy = "supervisor" }, body)
    if not ok then eg = e end
  end)
  return eg
end

describe("a task handle", function()
  it("is not done right after spawn, and done once the group closed", function()
    local before, after
    tether.run(function()
      local t
      tether.with_group(function(g)
        t = g:spawn(function() tether.checkpoint() end)
        before = t:done()
      end)
      after = t:done()
    end)
    assert.is_false(before)
    assert.is_true(after)
  end)

  it("gives the task's return values with t:result(), holes included", function()
    local t
    tether.run(function()
      tether.with_group(function(g) t = g:spawn(function() return 1, nil, "three", nil end) end)
    end)
    local r = table.pack(t:result())
    assert.are.equal(4, r.n)
    assert.are.same({ 1, nil, "three", nil }, { r[1], r[2], r[3], r[4] })
    assert.is_false(t:failed())
    assert.is_false(t:cancelled())
    assert.is_nil(t:error())
  end)

  it("raises a clear error from t:result() while the task is not finished", function()
    local msg
    tether.run(function()
      tether.with_group(function(g)
        local t = g:spawn({ name = "slowpoke" }, function() tether.sleep(0.005) end)
        local ok, e = pcall(t.result, t)
        assert(not ok)
        msg = tostring(e)
      end)
    end)
    assert.matches("slowpoke", msg, 1, true)
    assert.matches("not finished", msg, 1, true)
  end)

  it("raises from t:result() an error naming the task's own error when it failed", function()
    local t
    supervised(function(g)
      t = g:spawn({ name = "broken" }, function() error("disk on fire", 0) end)
    end)
    local msg = tostring(error_of(t.result, t))
    assert.matches("broken", msg, 1, true)
    assert.matches("disk on fire", msg, 1, true)
    assert.is_true(t:done())
    assert.is_true(t:failed())
    assert.is_false(t:cancelled())
  end)

  it("raises from t:result() a clear error when the task was cancelled", function()
    local t
    tether.run(function()
      tether.with_group(function(g)
        t = g:spawn({ name = "sleeper" }, tether.sleep_forever)
        tether.checkpoint()
        t:cancel()
      end)
    end)
    local msg = tostring(error_of(t.result, t))
    assert.matches("sleeper", msg, 1, true)
    assert.matches("cancelled", msg, 1, true)
    assert.is_true(t:done())
    assert.is_true(t:cancelled())
    assert.is_false(t:failed())
  end)

  it("gives the very error value with t:error()", function()
    local e = { code = 7 }
    local t
    local eg = supervised(function(g) t = g:spawn(function() error(e) end) end)
    assert.are.equal(e, t:error())
    assert.are.equal(e, eg.errors[1])
  end)

  it("tells error(nil) apart from success with t:failed()", function()
    local bad, good
    local eg = supervised(function(g)
      bad = g:spawn(function() error(nil) end)
      good = g:spawn(function() return nil end)
    end)
    assert.is_true(bad:failed())
    assert.is_nil(bad:error())
    assert.has_error(function() bad:result() end)
    assert.is_false(good:failed())
    assert.is_nil(good:error())
    -- the nil error is counted in the group, not lost
    assert.are.equal(1, eg.errors.n)
    assert.is_nil(eg.errors[1])
  end)

  it("reports error(false) as a failure with the value false", function()
    local t
    local eg = supervised(function(g) t = g:spawn(function() error(false) end) end)
    assert.is_true(t:failed())
    assert.are.equal(false, t:error())
    assert.has_error(function() t:result() end)
    assert.are.equal(1, eg.errors.n)
    assert.are.equal(false, eg.errors[1])
  end)

  it("has no error and is not failed when the task was cancelled", function()
    local t
    tether.run(function()
      tether.with_group(function(g)
        t = g:spawn(tether.sleep_forever)
        tether.checkpoint()
        t:cancel()
      end)
    end)
    assert.is_false(t:failed())
    assert.is_true(t:cancelled())
    assert.is_true(tether.Cancelled:is(t:error()) or t:error() == nil)
  end)
end)

describe("t:wait()", function()
  it("blocks until the task has finished", function()
    local finished = false
    tether.run(function()
      tether.with_group(function(g)
        local t = g:spawn(function()
          tether.sleep(0.01)
          finished = true
        end)
        t:wait()
        assert.is_true(finished)
        assert.is_true(t:done())
      end)
    end)
  end)

  it("returns at once for a task that already finished", function()
    local got = tether.run(function()
      local t = tether.with_group(function(g) return g:spawn(function() return 5 end) end)
      t:wait()
      t:wait()
      return t:result()
    end)
    assert.are.equal(5, got)
  end)

  it("never raises the task's error; the group reports it once", function()
    local wait_ok, wait_err, saw_failed
    local eg = supervised(function(g)
      local f = g:spawn({ name = "failing" }, function()
        tether.checkpoint()
        error("oops", 0)
      end)
      g:spawn(function()
        wait_ok, wait_err = pcall(f.wait, f)
        saw_failed = f:failed()
      end)
    end)
    assert.is_true(wait_ok, tostring(wait_err))
    assert.is_true(saw_failed)
    assert.are.equal(1, eg.errors.n)
    assert.are.equal("oops", eg.errors[1])
  end)

  it("never raises the error of a task in another group that failed", function()
    local wait_ok, wait_err, inner_err
    tether.run(function()
      tether.with_group(function(outer)
        local task_in_inner
        local ready = false
        outer:spawn(function()
          wait_until(function() return ready end)
          wait_ok, wait_err = pcall(task_in_inner.wait, task_in_inner)
        end)
        local ok, e = pcall(tether.with_group, function(inner)
          task_in_inner = inner:spawn(function()
            tether.checkpoint()
            error("inner oops", 0)
          end)
          ready = true
        end)
        assert(not ok)
        inner_err = e
      end)
    end)
    assert.is_true(wait_ok, tostring(wait_err))
    assert.are.equal("inner oops", inner_err.errors[1])
  end)

  it("is a checkpoint: a cancelled waiter gets Cancelled", function()
    local wait_err, target_done
    tether.run(function()
      tether.with_group(function(g)
        local target = g:spawn(tether.sleep_forever)
        local waiter = g:spawn(function()
          local ok, e = pcall(target.wait, target)
          wait_err = e
          target_done = target:done()
          if not ok then error(e, 0) end
        end)
        tether.checkpoint()
        waiter:cancel()
        waiter:wait()
        g:cancel()
      end)
    end)
    assert.is_true(is_cancelled(wait_err))
    assert.is_false(target_done)
  end)
end)

describe("t:cancel()", function()
  it("cancels that one task without failing the group", function()
    local seen, sibling
    local got = tether.run(function()
      return tether.with_group(function(g)
        local victim = g:spawn(function()
          local ok, e = pcall(tether.sleep_forever)
          seen = e
          if not ok then error(e, 0) end
        end)
        sibling = g:spawn(function()
          for _ = 1, 5 do tether.checkpoint() end
          return "sibling ok"
        end)
        tether.checkpoint()
        victim:cancel()
        tether.checkpoint()
        return "body ok"
      end)
    end)
    assert.are.equal("body ok", got)
    assert.is_true(is_cancelled(seen))
    assert.are.equal("sibling ok", sibling:result())
    assert.is_false(sibling:cancelled())
  end)

  it("passes its reason to the Cancelled the task sees", function()
    local seen
    tether.run(function()
      tether.with_group(function(g)
        local t = g:spawn(function()
          local ok, e = pcall(tether.sleep_forever)
          seen = e
          if not ok then error(e, 0) end
        end)
        tether.checkpoint()
        t:cancel("user pressed stop")
      end)
    end)
    assert.are.equal("user pressed stop", seen.reason)
  end)

  it("on a task that has not started yet still lets it start and clean up", function()
    local log, t = {}, nil
    tether.run(function()
      tether.with_group(function(g)
        t = g:spawn(function()
          log[#log + 1] = "setup"
          local _ <close> = setmetatable({}, { __close = function() log[#log + 1] = "cleanup" end })
          tether.checkpoint()
          log[#log + 1] = "past checkpoint"
        end)
        t:cancel()
      end)
    end)
    assert.are.same({ "setup", "cleanup" }, log)
    assert.is_true(t:cancelled())
  end)

  it("on a finished task changes nothing", function()
    local t
    tether.run(function()
      t = tether.with_group(function(g) return g:spawn(function() return "kept" end) end)
      t:cancel("too late")
    end)
    assert.is_false(t:cancelled())
    assert.are.equal("kept", t:result())
  end)

  it("on the body's own group members leaves the body running", function()
    local log = {}
    tether.run(function()
      tether.with_group(function(g)
        local ts = {}
        for i = 1, 3 do ts[i] = g:spawn(tether.sleep_forever) end
        tether.checkpoint()
        for i = 1, 3 do ts[i]:cancel() end
        for i = 1, 3 do ts[i]:wait() end
        log[#log + 1] = "body still running"
        tether.sleep(0.001)
        log[#log + 1] = "body finished"
      end)
    end)
    assert.are.same({ "body still running", "body finished" }, log)
  end)
end)

describe("a task's name", function()
  it("defaults to the function's source location", function()
    local function work() end
    local info = debug.getinfo(work, "S")
    local t
    tether.run(function()
      tether.with_group(function(g) t = g:spawn(work) end)
    end)
    assert.is_string(t.name)
    assert.matches("task_spec.lua:" .. info.linedefined, t.name, 1, true)
  end)

  it("can be given at spawn", function()
    local t
    tether.run(function()
      tether.with_group(function(g) t = g:spawn({ name = "fetch users" }, function() end) end)
    end)
    assert.are.equal("fetch users", t.name)
    assert.matches("fetch users", tostring(t), 1, true)
  end)

  it("is the task name the ErrorGroup gives for its error", function()
    local eg = supervised(function(g)
      g:spawn({ name = "alpha" }, function() error("a", 0) end)
      g:spawn({ name = "beta" }, function() error("b", 0) end)
    end)
    assert.are.equal(2, eg.errors.n)
    assert.are.equal("alpha", eg:info(1).task)
    assert.are.equal("beta", eg:info(2).task)
    assert.is_string(eg:info(1).traceback)
  end)
end)
