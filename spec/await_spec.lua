-- tether.await(start [, cancel]): any callback API as a cancellable checkpoint (contract §8).
-- The callbacks here are called by other tasks (a stored `done`); luv's come in embed_spec.
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local is_cancelled, error_of = support.is_cancelled, support.error_of

describe("tether.await", function()
  it("returns done's arguments, nils included, when done is called inside start", function()
    local r = tether.run(function()
      return table.pack(tether.await(function(done) done("a", nil, 3, nil) end))
    end)
    assert.same({ "a", nil, 3, nil, n = 4 }, r)
  end)

  it("is still one scheduler turn when done is called inside start", function()
    local log = {}
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function()
          tether.await(function(done) done() end)
          log[#log + 1] = "awaited"
        end)
        g:spawn(function() log[#log + 1] = "other" end)
      end)
    end)
    assert.same({ "other", "awaited" }, log)
  end)

  it("waits for a done called later, from elsewhere, and returns its values", function()
    local r = tether.run(function()
      local pending
      return tether.with_group(function(g)
        local t = g:spawn(function()
          return tether.await(function(done) pending = done end)
        end)
        support.wait_until(function() return pending ~= nil end)
        tether.sleep(0.002)
        assert.is_false(t:done())
        pending("later", 2)
        t:wait()
        return table.pack(t:result())
      end)
    end)
    assert.same({ "later", 2, n = 2 }, r)
  end)

  it("counts only the first call of done: a second one returns false and changes nothing", function()
    local r = tether.run(function()
      local again
      local v = table.pack(tether.await(function(done)
        assert.is_true(done("first"))
        again = done("second")
      end))
      return { v = v, again = again }
    end)
    assert.same({ v = { "first", n = 1 }, again = false }, r)
  end)

  it("on cancellation calls cancel; true ends it with Cancelled at once, and a late done is ignored", function()
    local cancel_calls, late, err = 0, nil, nil
    tether.run(function()
      local pending
      tether.move_on_after(0.005, function()
        local ok, e = pcall(tether.await, function(done) pending = done end,
          function() cancel_calls = cancel_calls + 1; return true end)
        assert.is_false(ok)
        err = e
        error(e)
      end)
      late = pending("too late")
    end)
    assert.equal(1, cancel_calls)
    assert.is_true(is_cancelled(err))
    assert.is_false(late)
  end)

  it("without a cancel function ends with Cancelled at once on cancellation", function()
    local late, err
    tether.run(function()
      local pending
      tether.move_on_after(0.002, function()
        local _
        _, err = pcall(tether.await, function(done) pending = done end)
        error(err)
      end)
      late = pending("ignored")
    end)
    assert.is_true(is_cancelled(err))
    assert.is_false(late)
  end)

  it("when cancel returns false, waits for done and returns its values; the cancellation comes next", function()
    local got, after
    tether.run(function()
      local pending
      tether.with_group(function(g)
        g:spawn(function()
          support.wait_until(function() return pending ~= nil end)
          tether.sleep(0.01) -- well after the timeout below
          pending("finished anyway")
        end)
        tether.move_on_after(0.002, function()
          got = tether.await(function(done) pending = done end, function() return false end)
          local ok, e = pcall(tether.checkpoint)
          after = (not ok) and is_cancelled(e)
          error(e)
        end)
      end)
    end)
    assert.equal("finished anyway", got)
    assert.is_true(after)
  end)

  it("when cancel itself calls done (and returns nothing), returns those values", function()
    local got, after = tether.run(function()
      local got, after
      tether.move_on_after(0.002, function()
        local pending
        got = table.pack(tether.await(function(done) pending = done end,
                                      function() pending("settled by cancel") end))
        local ok, e = pcall(tether.checkpoint)
        after = (not ok) and is_cancelled(e)
        error(e)
      end)
      return got, after
    end)
    assert.same({ "settled by cancel", n = 1 }, got)
    assert.is_true(after)
  end)

  it("raises Cancelled before start runs in a cancelled scope", function()
    local started = false
    local r = tether.run(function()
      return tether.move_on_after(0, function()
        tether.await(function() started = true end)
      end)
    end)
    assert.is_false(r)
    assert.is_false(started)
  end)

  it("raises start's error unchanged; a done after that is ignored", function()
    local boom = {}
    local r = tether.run(function()
      local keep
      local ok, e = pcall(tether.await, function(done) keep = done; error(boom) end)
      return { ok = ok, same = e == boom, late = keep("x") }
    end)
    assert.same({ ok = false, same = true, late = false }, r)
  end)

  it("raises cancel's error from await", function()
    local boom = {}
    local r = tether.run(function()
      local e
      tether.move_on_after(0.002, function()
        local ok
        ok, e = pcall(tether.await, function() end, function() error(boom) end)
        assert(not ok)
      end)
      return e == boom
    end)
    assert.is_true(r)
  end)

  it("counts as a pending request: the run waits for it (no deadlock report) until done comes", function()
    local r = tether.run(function()
      local pending
      return tether.with_group(function(g)
        local t = g:spawn(tether.await, function(done) pending = done end)
        g:spawn(function()
          support.wait_until(function() return pending ~= nil end)
          tether.sleep(0.005)
          pending("ok")
        end)
        t:wait()
        return t:result()
      end)
    end)
    assert.equal("ok", r)
  end)

  it("start may not block, and await outside a task is a clear error", function()
    local msg = tether.run(function()
      return tostring(error_of(tether.await, function() tether.sleep(0.001) end))
    end)
    assert.matches("tether.sleep: cannot block here", msg, 1, true)
    local e = tostring(error_of(tether.await, function(done) done() end))
    assert.matches("tether.await: called outside tether.run", e, 1, true)
  end)

  it("checks its arguments", function()
    tether.run(function()
      assert.matches("bad argument #1", tostring(error_of(tether.await, 42)), 1, true)
      assert.matches("bad argument #2", tostring(error_of(tether.await, function() end, 42)), 1, true)
    end)
  end)
end)
