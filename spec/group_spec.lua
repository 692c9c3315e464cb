-- Task groups: waiting, failure, nesting, g:cancel, spawning rules, dump (contract sections 1 and 5).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local error_of, wait_until, is_cancelled = support.error_of, support.wait_until, support.is_cancelled

-- Returns the leaves of an ErrorGroup tree as an array with a count n.
local function leaves(eg, out)
  out = out or { n = 0 }
  for i = 1, eg.errors.n do
    local e = eg.errors[i]
    if tether.ErrorGroup:is(e) then
      leaves(e, out)
    else
      out.n = out.n + 1
      out[out.n] = e
    end
  end
  return out
end

-- Blocks until cancelled, then records the Cancelled in log[key] and re-raises it.
local function block_and_record(log, key)
  local ok, err = pcall(tether.sleep_forever)
  assert(not ok, "sleep_forever returned")
  log[key] = err
  error(err, 0)
end

describe("tether.with_group", function()
  it("runs the body in the calling task", function()
    local outside, inside
    tether.run(function()
      outside = coroutine.running()
      tether.with_group(function() inside = coroutine.running() end)
    end)
    assert.are.equal(outside, inside)
  end)

  it("returns the body's results, holes included", function()
    local n, a, b, c = tether.run(function()
      return (function(...) return select("#", ...), ... end)(
        tether.with_group(function(g)
          g:spawn(tether.sleep, 0.001)
          return "a", nil, 3
        end))
    end)
    assert.are.same({ 3, "a", nil, 3 }, { n, a, b, c })
  end)

  it("does not return until every spawned task has finished", function()
    local finished, handles = {}, {}
    tether.run(function()
      tether.with_group(function(g)
        handles[1] = g:spawn(function() tether.sleep(0.02); finished[1] = true end)
        handles[2] = g:spawn(function() tether.sleep(0.001); finished[2] = true end)
        handles[3] = g:spawn(function()
          for _ = 1, 10 do tether.checkpoint() end
          finished[3] = true
        end)
      end)
      for i = 1, 3 do
        assert.is_true(finished[i], "task " .. i .. " had not finished")
        assert.is_true(handles[i]:done())
      end
    end)
  end)

  it("waits for tasks that children spawn into the same group", function()
    local grandchild_done = false
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function()
          tether.checkpoint()
          g:spawn(function()
            tether.sleep(0.005)
            grandchild_done = true
          end)
        end)
      end)
      assert.is_true(grandchild_done)
    end)
  end)

  it("waits for tasks spawned into it by a task of another group", function()
    local done = false
    tether.run(function()
      tether.with_group(function(outer)
        tether.with_group(function(inner)
          inner:spawn(function()
            outer:spawn(function()
              tether.sleep(0.005)
              done = true
            end)
          end)
        end)
      end)
      assert.is_true(done)
    end)
  end)

  it("passes spawn's extra arguments to the task, nils included", function()
    local got
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function(...) got = table.pack(...) end, 1, nil, "x", nil)
      end)
    end)
    assert.are.equal(4, got.n)
    assert.are.same({ 1, nil, "x", nil }, { got[1], got[2], got[3], got[4] })
  end)
end)

describe("spawned tasks", function()
  it("never run before spawn returns", function()
    local log = {}
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function() log[#log + 1] = "child" end)
        log[#log + 1] = "spawn returned"
      end)
    end)
    assert.are.same({ "spawn returned", "child" }, log)
  end)

  it("start in spawn order, on a later scheduler tick", function()
    local log = {}
    tether.run(function()
      tether.with_group(function(g)
        for i = 1, 5 do
          g:spawn(function() log[#log + 1] = i end)
        end
        log[#log + 1] = "body done"
      end)
    end)
    assert.are.same({ "body done", 1, 2, 3, 4, 5 }, log)
  end)

  it("spawned by a child start once the child reaches a checkpoint", function()
    local log = {}
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function()
          g:spawn(function() log[#log + 1] = "grandchild" end)
          log[#log + 1] = "child continues"
          tether.checkpoint()
          log[#log + 1] = "child resumed"
        end)
      end)
    end)
    assert.are.same({ "child continues", "grandchild", "child resumed" }, log)
  end)
end)

describe("when a task fails", function()
  it("raises an ErrorGroup of one holding that very error", function()
    local e = { what = "boom" }
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn({ name = "worker" }, function()
          tether.checkpoint()
          error(e)
        end)
      end)
    end)
    assert.is_true(tether.ErrorGroup:is(err))
    assert.is_true(tether.Error:is(err))
    assert.are.equal(1, err.errors.n)
    assert.are.equal(e, err.errors[1])
    assert.are.equal("worker", err:info(1).task)
  end)

  it("cancels the blocked body, which sees a Cancelled naming the failed task", function()
    local seen, after_block = {}, false
    local e = {}
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn({ name = "fetcher" }, function()
          tether.checkpoint()
          error(e)
        end)
        block_and_record(seen, "body")
        after_block = true
      end)
    end)
    assert.is_false(after_block)
    assert.is_true(is_cancelled(seen.body))
    assert.are.equal("fetcher", seen.body.source)
    assert.matches("fetcher", tostring(seen.body.reason), 1, true)
    assert.are.equal(1, err.errors.n)
    assert.are.equal(e, err.errors[1])
  end)

  it("cancels blocked siblings; their pcall and <close> cleanup runs", function()
    local seen, closed = {}, {}
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn({ name = "a" }, function() block_and_record(seen, "a") end)
        g:spawn({ name = "b" }, function()
          local _ <close> = setmetatable({}, { __close = function(_, e) closed.b = e end })
          tether.sleep_forever()
        end)
        g:spawn({ name = "bad" }, function()
          tether.checkpoint()
          error("bad failed", 0)
        end)
      end)
    end)
    assert.is_true(is_cancelled(seen.a))
    assert.are.equal("bad", seen.a.source)
    assert.is_true(is_cancelled(closed.b))
    -- the cancellations are not in the group: only the real error is
    assert.are.equal(1, err.errors.n)
    assert.are.equal("bad failed", err.errors[1])
  end)

  it("still starts the tasks spawned with it, which stop at their first checkpoint", function()
    local log = {}
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn(function() error("first", 0) end)
        for _, name in ipairs({ "b", "c" }) do
          g:spawn(function()
            log[#log + 1] = name .. " started"
            local ok, e = pcall(tether.checkpoint)
            log[#log + 1] = name .. (ok and " not cancelled" or is_cancelled(e) and " cancelled" or " ?")
            if not ok then error(e, 0) end
            log[#log + 1] = name .. " ran on"
          end)
        end
      end)
    end)
    table.sort(log)
    assert.are.same({ "b cancelled", "b started", "c cancelled", "c started" }, log)
    assert.are.equal(1, err.errors.n)
  end)

  it("collects every error, in the order they were raised", function()
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        for _, name in ipairs({ "x", "y", "z" }) do
          g:spawn(function() error(name, 0) end)
        end
      end)
    end)
    assert.are.equal(3, err.errors.n)
    assert.are.same({ "x", "y", "z" }, { err.errors[1], err.errors[2], err.errors[3] })
  end)

  it("also reports an error a sibling raises while being cancelled, after the first", function()
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn(function()
          local ok = pcall(tether.sleep_forever)
          assert(not ok)
          error("cleanup failed", 0)
        end)
        g:spawn(function()
          tether.checkpoint()
          error("first failure", 0)
        end)
      end)
    end)
    assert.are.equal(2, err.errors.n)
    assert.are.same({ "first failure", "cleanup failed" }, { err.errors[1], err.errors[2] })
  end)

  it("reports the body's own error first and cancels the children", function()
    local seen = {}
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn(function() block_and_record(seen, "child") end)
        g:spawn(function()
          pcall(tether.sleep_forever)
          error("child cleanup failed", 0)
        end)
        tether.checkpoint()
        error("body failed", 0)
      end)
    end)
    assert.is_true(is_cancelled(seen.child))
    assert.are.equal(2, err.errors.n)
    assert.are.same({ "body failed", "child cleanup failed" }, { err.errors[1], err.errors[2] })
  end)

  it("cancels a task whose pcall cleanup is blocked; the group still reports only the failure", function()
    local log = {}
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn({ name = "cleaner" }, function()
          pcall(function() error("handled locally") end)
          log.cleaning = true
          local ok, e = pcall(tether.sleep_forever)  -- cleanup that blocks
          log.cleanup_ok, log.cleanup_err = ok, e
          log.cleanup_finished = true
        end)
        g:spawn({ name = "failer" }, function()
          wait_until(function() return log.cleaning end)
          tether.checkpoint()
          error("failer broke", 0)
        end)
      end)
    end)
    assert.is_true(log.cleanup_finished)
    assert.is_false(log.cleanup_ok)
    assert.is_true(is_cancelled(log.cleanup_err))
    assert.are.equal("failer", log.cleanup_err.source)
    assert.are.equal(1, err.errors.n)
    assert.are.equal("failer broke", err.errors[1])
  end)

  it("cancels a task whose <close> handler is blocked; the handler sees the Cancelled", function()
    local log = {}
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn({ name = "closer" }, function()
          local _ <close> = setmetatable({}, { __close = function()
            log.closing = true
            local ok, e = pcall(tether.sleep_forever)
            log.close_ok, log.close_err = ok, e
          end })
          return "work done"
        end)
        g:spawn({ name = "failer" }, function()
          wait_until(function() return log.closing end)
          error("failer broke", 0)
        end)
      end)
    end)
    assert.is_false(log.close_ok)
    assert.is_true(is_cancelled(log.close_err))
    assert.are.equal("failer", log.close_err.source)
    assert.are.equal(1, err.errors.n)
    assert.are.equal("failer broke", err.errors[1])
  end)

  it("reports a cleanup error raised after a sibling's failure, both exactly once", function()
    local log = {}
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn({ name = "closer" }, function()
          local _ <close> = setmetatable({}, { __close = function()
            log.closing = true
            pcall(tether.sleep_forever)
            error("close failed", 0)
          end })
        end)
        g:spawn({ name = "failer" }, function()
          wait_until(function() return log.closing end)
          error("failer broke", 0)
        end)
      end)
    end)
    assert.are.equal(2, err.errors.n)
    assert.are.same({ "failer broke", "close failed" }, { err.errors[1], err.errors[2] })
    assert.are.equal("failer", err:info(1).task)
    assert.are.equal("closer", err:info(2).task)
  end)

  it("is not reported when user code caught the error", function()
    local got = tether.run(function()
      return tether.with_group(function(g)
        local t = g:spawn(function()
          local ok = pcall(error, "swallowed")
          return ok
        end)
        t:wait()
        return t:result()
      end)
    end)
    assert.is_false(got)
  end)
end)

describe("nested groups", function()
  it("an uncaught inner failure: the outer ErrorGroup holds the inner one", function()
    local seen = {}
    local err = error_of(tether.run, function()
      tether.with_group({ name = "outer" }, function(outer)
        outer:spawn({ name = "outer sibling" }, function() block_and_record(seen, "sibling") end)
        tether.with_group({ name = "inner" }, function(inner)
          inner:spawn({ name = "leaf" }, function()
            tether.checkpoint()
            error("leaf failed", 0)
          end)
        end)
      end)
    end)
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal(1, err.errors.n)
    local inner = err.errors[1]
    assert.is_true(tether.ErrorGroup:is(inner))
    assert.are.equal(1, inner.errors.n)
    assert.are.equal("leaf failed", inner.errors[1])
    assert.are.equal("leaf", inner:info(1).task)
    assert.is_true(is_cancelled(seen.sibling))
  end)

  it("a caught inner failure lets the outer group's other tasks keep running", function()
    local inner_err, sibling
    local got = tether.run(function()
      return tether.with_group(function(outer)
        local proceed = false
        sibling = outer:spawn(function()
          wait_until(function() return proceed end)
          tether.sleep(0.001)
          return "sibling finished"
        end)
        local ok, e = pcall(tether.with_group, function(inner)
          inner:spawn(function()
            tether.checkpoint()
            error("inner failed", 0)
          end)
          tether.sleep_forever()
        end)
        assert(not ok)
        inner_err = e
        proceed = true
        tether.checkpoint()
        return "outer body finished"
      end)
    end)
    assert.are.equal("outer body finished", got)
    assert.is_true(tether.ErrorGroup:is(inner_err))
    assert.are.equal("inner failed", inner_err.errors[1])
    assert.is_false(sibling:cancelled())
    assert.is_false(sibling:failed())
    assert.are.equal("sibling finished", sibling:result())
  end)

  it("an inner group cancelled from outside cancels its children and lets Cancelled through", function()
    local seen, inner_ok, inner_err = {}, nil, nil
    local n = select("#", tether.run(function()
      return tether.with_group(function(outer)
        outer:spawn(function()
          wait_until(function() return seen.ready end)
          outer:cancel("stop")
        end)
        inner_ok, inner_err = pcall(tether.with_group, function(inner)
          inner:spawn(function() block_and_record(seen, "inner child") end)
          seen.ready = true
          tether.sleep_forever()
        end)
        error(inner_err, 0)
      end)
    end))
    assert.are.equal(0, n)
    assert.is_false(inner_ok)
    assert.is_true(is_cancelled(inner_err))
    assert.is_true(is_cancelled(seen["inner child"]))
    assert.are.equal("stop", seen["inner child"].reason)
  end)

  it("a body that returned still raises the enclosing Cancelled if cancelled while waiting", function()
    local seen, inner_ok, inner_err = {}, nil, nil
    tether.run(function()
      tether.with_group(function(outer)
        outer:spawn(function()
          wait_until(function() return seen.waiting end)
          outer:cancel("enough")
        end)
        inner_ok, inner_err = pcall(tether.with_group, function(inner)
          inner:spawn(function()
            seen.waiting = true
            block_and_record(seen, "child")
          end)
          return "body result"
        end)
        if not inner_ok then error(inner_err, 0) end
      end)
    end)
    assert.is_false(inner_ok)
    assert.is_true(is_cancelled(inner_err))
    assert.is_true(is_cancelled(seen.child))
  end)

  it("an outer cancel, then an inner task's real error: the ErrorGroup wins", function()
    local seen, inner_err = {}, nil
    local err = error_of(tether.run, function()
      tether.with_group(function(outer)
        outer:spawn(function()
          wait_until(function() return seen.ready end)
          outer:cancel("outer cancel")
        end)
        local ok, e = pcall(tether.with_group, function(inner)
          inner:spawn(function()
            seen.ready = true
            local ok2, ce = pcall(tether.sleep_forever)
            seen.cancel = ce
            error("inner failure", 0)
          end)
        end)
        inner_err = e
        if not ok then error(e, 0) end
      end)
    end)
    assert.are.equal("outer cancel", seen.cancel.reason)
    assert.is_true(tether.ErrorGroup:is(inner_err))
    assert.are.equal("inner failure", inner_err.errors[1])
    -- the outer group asked for its own cancel, but a real error was raised
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal(1, err.errors.n)
    assert.are.equal(inner_err, err.errors[1])
  end)

  it("an inner failure, then an outer cancel while the inner group waits: the ErrorGroup wins", function()
    local seen, inner_err = {}, nil
    local err = error_of(tether.run, function()
      tether.with_group(function(outer)
        outer:spawn(function()
          wait_until(function() return seen.inner_failed end)
          outer:cancel("outer cancel")
          seen.outer_cancelled = true
        end)
        local ok, e = pcall(tether.with_group, function(inner)
          inner:spawn(function()
            pcall(tether.sleep_forever)
            -- a cleanup that keeps the inner group waiting until the outer cancel is in;
            -- plain yields cannot raise, so it is not cut short
            while not seen.outer_cancelled do coroutine.yield() end
          end)
          inner:spawn(function()
            tether.checkpoint()
            seen.inner_failed = true
            error("inner failure", 0)
          end)
        end)
        inner_err = e
        if not ok then error(e, 0) end
      end)
    end)
    assert.is_true(seen.outer_cancelled)
    assert.is_true(tether.ErrorGroup:is(inner_err))
    assert.are.equal(1, inner_err.errors.n)
    assert.are.equal("inner failure", inner_err.errors[1])
    assert.are.equal(inner_err, err.errors[1])
  end)
end)

describe("g:cancel(reason)", function()
  it("makes with_group return the body's results when the body had returned", function()
    local seen, called_before, called_after = {}, nil, nil
    local a, b = tether.run(function()
      return tether.with_group(function(g)
        for _, k in ipairs({ "x", "y" }) do
          g:spawn(function()
            seen[k .. " blocked"] = true
            block_and_record(seen, k)
          end)
        end
        g:spawn(function()
          wait_until(function() return seen["x blocked"] and seen["y blocked"] and seen.body_done end)
          called_before = g.cancel_called
          g:cancel("no longer needed")
          called_after = g.cancel_called
        end)
        seen.body_done = true
        return "r1", "r2"
      end)
    end)
    assert.are.same({ "r1", "r2" }, { a, b })
    assert.is_false(called_before)
    assert.is_true(called_after)
    for _, k in ipairs({ "x", "y" }) do
      assert.is_true(is_cancelled(seen[k]))
      assert.are.equal("no longer needed", seen[k].reason)
      assert.is_nil(seen[k].source)
    end
  end)

  it("makes with_group return nothing when the body was interrupted", function()
    local seen = {}
    local n = select("#", tether.run(function()
      return tether.with_group(function(g)
        g:spawn(function()
          tether.checkpoint()
          g:cancel("shutdown")
        end)
        block_and_record(seen, "body")
        return "never"
      end)
    end))
    assert.are.equal(0, n)
    assert.is_true(is_cancelled(seen.body))
    assert.are.equal("shutdown", seen.body.reason)
  end)

  it("called by the body interrupts the body at its next checkpoint", function()
    local reached = false
    local n = select("#", tether.run(function()
      return tether.with_group(function(g)
        g:cancel()
        tether.checkpoint()
        reached = true
        return "never"
      end)
    end))
    assert.are.equal(0, n)
    assert.is_false(reached)
  end)

  it("still raises the ErrorGroup when a real error was also raised", function()
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn(function()
          pcall(tether.sleep_forever)
          error("cleanup failed", 0)
        end)
        tether.checkpoint()
        g:cancel("stop")
      end)
    end)
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal(1, err.errors.n)
    assert.are.equal("cleanup failed", err.errors[1])
  end)

  it("is idempotent: a second cancel changes nothing", function()
    local seen = {}
    local got = tether.run(function()
      return tether.with_group(function(g)
        g:spawn(function() block_and_record(seen, "child") end)
        tether.checkpoint()
        g:cancel("first")
        g:cancel("second")
        g:cancel()
        return "ok"
      end)
    end)
    assert.are.equal("ok", got)
    assert.are.equal("first", seen.child.reason)
  end)

  it("is a no-op once the group has closed", function()
    local got = tether.run(function()
      local saved = tether.with_group(function(g)
        g:spawn(tether.checkpoint)
        return g
      end)
      saved:cancel("too late")
      saved:cancel()
      -- the calling task is not cancelled by it
      tether.sleep(0.001)
      tether.checkpoint()
      return "still fine"
    end)
    assert.are.equal("still fine", got)
  end)
end)

describe("spawning into a cancelled or closed group", function()
  it("a task spawned into a cancelled group still starts and runs until its first checkpoint", function()
    local log, t = {}, nil
    local got = tether.run(function()
      return tether.with_group(function(g)
        g:cancel("cancelled early")
        t = g:spawn(function()
          log[#log + 1] = "setup"
          local _ <close> = setmetatable({}, { __close = function() log[#log + 1] = "cleanup" end })
          tether.checkpoint()
          log[#log + 1] = "past checkpoint"
        end)
        return "body returned"
      end)
    end)
    assert.are.equal("body returned", got)
    assert.are.same({ "setup", "cleanup" }, log)
    assert.is_true(t:cancelled())
    assert.is_false(t:failed())
  end)

  it("tasks spawned just before the group was cancelled still start", function()
    local log = {}
    tether.run(function()
      tether.with_group(function(g)
        for _, name in ipairs({ "a", "b" }) do
          g:spawn(function()
            log[#log + 1] = name .. " setup"
            local ok, e = pcall(tether.checkpoint)
            log[#log + 1] = name .. (not ok and is_cancelled(e) and " cancelled" or " not cancelled")
          end)
        end
        g:cancel()
      end)
    end)
    table.sort(log)
    assert.are.same({ "a cancelled", "a setup", "b cancelled", "b setup" }, log)
  end)

  it("a task spawned into a group cancelled by a failure is created cancelled", function()
    local log = {}
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn(function()
          local ok = pcall(tether.sleep_forever)
          assert(not ok)
          g:spawn({ name = "late" }, function()
            log[#log + 1] = "late setup"
            local ok2, e = pcall(tether.checkpoint)
            log[#log + 1] = not ok2 and is_cancelled(e) and "late cancelled" or "late not cancelled"
          end)
        end)
        g:spawn(function()
          tether.checkpoint()
          error("boom", 0)
        end)
      end)
    end)
    assert.are.same({ "late setup", "late cancelled" }, log)
    assert.are.equal(1, err.errors.n)
    assert.are.equal("boom", err.errors[1])
  end)

  it("spawning into a closed group is a clear error and the function never runs", function()
    local ran, msg = false, nil
    local got = tether.run(function()
      local g = tether.with_group(function(g) return g end)
      local ok, e = pcall(g.spawn, g, function() ran = true end)
      assert(not ok)
      msg = tostring(e)
      tether.sleep(0.001)
      return "after"
    end)
    assert.are.equal("after", got)
    assert.is_false(ran)
    assert.matches("spawn", msg, 1, true)
    assert.matches("closed", msg, 1, true)
  end)
end)

describe("guarantees", function()
  it("no orphans: every task has finished when with_group returns or raises", function()
    local handles = {}
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        for i = 1, 30 do
          handles[#handles + 1] = g:spawn(function()
            if i % 3 == 0 then tether.sleep_forever() end
            if i % 3 == 1 then
              g:spawn(function() pcall(tether.sleep_forever); tether.checkpoint() end)
            end
            tether.checkpoint()
            if i == 20 then error("one failure", 0) end
          end)
        end
      end)
    end)
    assert.are.equal(1, err.errors.n)
    for i, t in ipairs(handles) do
      assert.is_true(t:done(), "task " .. i .. " still alive")
    end
  end)

  it("each error is reported exactly once, even through nested groups", function()
    local raised = {}
    local function fail(tag)
      local e = { tag = tag }
      raised[#raised + 1] = e
      error(e)
    end
    local err = error_of(tether.run, function()
      tether.with_group(function(g1)
        g1:spawn(function()
          pcall(tether.sleep_forever)
          fail("level1 cleanup")
        end)
        tether.with_group(function(g2)
          g2:spawn(function()
            pcall(tether.sleep_forever)
            fail("level2 cleanup")
          end)
          tether.with_group(function(g3)
            g3:spawn(function()
              tether.checkpoint()
              fail("level3")
            end)
          end)
        end)
      end)
    end)
    local got = leaves(err)
    assert.are.equal(#raised, got.n)
    for _, e in ipairs(raised) do
      local count = 0
      for i = 1, got.n do if got[i] == e then count = count + 1 end end
      assert.are.equal(1, count, "error " .. e.tag .. " reported " .. count .. " times")
    end
  end)

  it("a finished task holds no memory once its handle is dropped", function()
    local weak = setmetatable({}, { __mode = "v" })
    local alive
    tether.run(function()
      tether.with_group(function(g)
        (function()
          local arg = {}
          local function fn(a)
            weak.co = coroutine.running()
            local res = { a }
            weak.result = res
            tether.checkpoint()
            return res
          end
          weak.arg, weak.fn = arg, fn
          weak.handle = g:spawn({ name = "big" }, fn, arg)
        end)()
      end)
      collectgarbage("collect")
      collectgarbage("collect")
      alive = {}
      for k in pairs(weak) do alive[#alive + 1] = k end
      table.sort(alive)
    end)
    assert.are.same({}, alive)
  end)

  it("a failed or cancelled task holds no memory once its handle and error are dropped", function()
    local weak = setmetatable({}, { __mode = "v" })
    local alive
    tether.run(function()
      (function()
        local ok = pcall(tether.with_group, function(g)
          local e = { "failure value" }
          weak.err = e
          weak.failed = g:spawn(function()
            weak.failed_co = coroutine.running()
            tether.checkpoint()
            error(e)
          end)
          local big = {}
          weak.big = big
          weak.cancelled = g:spawn(function(x)
            weak.cancelled_co = coroutine.running()
            tether.sleep_forever()
            return x
          end, big)
        end)
        assert(not ok)
      end)()
      collectgarbage("collect")
      collectgarbage("collect")
      alive = {}
      for k in pairs(weak) do alive[#alive + 1] = k end
      table.sort(alive)
    end)
    assert.are.same({}, alive)
  end)
end)

describe("tether.dump()", function()
  it("names the live tasks and groups and shows where they block", function()
    local text, line_w, line_t
    tether.run(function()
      tether.with_group({ name = "pool" }, function(g)
        local watcher = g:spawn({ name = "watcher" }, function()
          line_w = debug.getinfo(1, "l").currentline + 1
          tether.sleep_forever()
        end)
        g:spawn({ name = "ticker" }, function()
          line_t = debug.getinfo(1, "l").currentline + 1
          watcher:wait()
        end)
        wait_until(function() return line_w and line_t end)
        tether.checkpoint()
        text = tether.dump()
        g:cancel()
      end)
    end)
    assert.is_string(text)
    assert.matches("pool", text, 1, true)
    assert.matches("watcher", text, 1, true)
    assert.matches("ticker", text, 1, true)
    local function shows(line, op)
      return text:find("group_spec.lua:" .. line, 1, true) ~= nil or text:find(op, 1, true) ~= nil
    end
    assert.is_true(shows(line_w, "sleep_forever"), "dump does not say where 'watcher' blocks:\n" .. text)
    assert.is_true(shows(line_t, "wait"), "dump does not say where 'ticker' blocks:\n" .. text)
  end)

  it("shows nested groups inside the task that opened them", function()
    local text
    tether.run(function()
      tether.with_group({ name = "outer-grp" }, function(outer)
        outer:spawn({ name = "opener" }, function()
          tether.with_group({ name = "inner-grp" }, function(inner)
            inner:spawn({ name = "deep-task" }, tether.sleep_forever)
            tether.checkpoint()
            text = tether.dump()
            inner:cancel()
          end)
        end)
      end)
    end)
    for _, name in ipairs({ "outer-grp", "opener", "inner-grp", "deep-task" }) do
      assert.matches(name, text, 1, true)
    end
    -- a tree: the outer group comes before what it contains
    assert.is_true(text:find("outer-grp", 1, true) < text:find("inner-grp", 1, true))
    assert.is_true(text:find("inner-grp", 1, true) < text:find("deep-task", 1, true))
  end)

  it("outside tether.run says in one line that nothing runs", function()
    local text = tether.dump()
    assert.is_string(text)
    assert.is_nil(text:gsub("\n$", ""):find("\n"))
  end)
end)
