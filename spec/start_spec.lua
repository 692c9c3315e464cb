-- g:start: spawning a task and waiting until it reports that it has started (contract section 1).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local error_of, is_cancelled = support.error_of, support.is_cancelled

describe("g:start", function()
  it("returns the value the task passes to started", function()
    local port = tether.run(function()
      return tether.with_group(function(g)
        local p = g:start(function(started)
          started(8080)
          tether.sleep_forever()
        end)
        g:cancel()
        return p
      end)
    end)
    assert.are.equal(8080, port)
  end)

  it("passes its extra arguments to the task after started, nils included", function()
    local got = tether.run(function()
      return tether.with_group(function(g)
        return g:start(function(started, ...)
          started(table.pack(...))
        end, "a", nil, 3)
      end)
    end)
    assert.are.equal(3, got.n)
    assert.are.same({ "a", nil, 3 }, { got[1], got[2], got[3] })
  end)

  it("returns nil when started is called without a value", function()
    local n, v = tether.run(function()
      return tether.with_group(function(g)
        local r = g:start(function(started) started() end)
        return 1, r
      end)
    end)
    assert.are.equal(1, n)
    assert.is_nil(v)
  end)

  it("blocks until started is called, even when the task blocks first", function()
    local log = {}
    tether.run(function()
      tether.with_group(function(g)
        g:start(function(started)
          log[#log + 1] = "setting up"
          tether.sleep(0.005)
          tether.checkpoint()
          log[#log + 1] = "ready"
          started("v")
          tether.sleep(0.001)
        end)
        log[#log + 1] = "start returned"
      end)
    end)
    assert.are.same({ "setting up", "ready", "start returned" }, log)
  end)

  it("lets other tasks run while it waits", function()
    local log = {}
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function() log[#log + 1] = "other task ran" end)
        g:start(function(started)
          tether.checkpoint()
          tether.checkpoint()
          started()
        end)
        log[#log + 1] = "start returned"
      end)
    end)
    assert.are.same({ "other task ran", "start returned" }, log)
  end)

  it("after started, the task belongs to the group: with_group waits for it", function()
    local finished = false
    tether.run(function()
      tether.with_group(function(g)
        g:start(function(started)
          started()
          tether.sleep(0.005)
          finished = true
        end)
      end)
      assert.is_true(finished)
    end)
  end)

  it("after started, the task is cancelled with its group", function()
    local seen
    tether.run(function()
      tether.with_group(function(g)
        g:start(function(started)
          started()
          local ok, e = pcall(tether.sleep_forever)
          seen = e
          if not ok then error(e, 0) end
        end)
        g:cancel("shutting down")
      end)
    end)
    assert.is_true(is_cancelled(seen))
    assert.are.equal("shutting down", seen.reason)
  end)

  it("after started, the task's failure fails the group under its name", function()
    local e = { "late failure" }
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        local v = g:start({ name = "server" }, function(started)
          started("up")
          tether.checkpoint()
          error(e)
        end)
        assert(v == "up")
        tether.sleep_forever()
      end)
    end)
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal(1, err.errors.n)
    assert.are.equal(e, err.errors[1])
    assert.are.equal("server", err:info(1).task)
  end)

  it("wakes its caller and the tasks waiting on the starting task, each once", function()
    local log = {}
    local v = tether.run(function()
      return tether.with_group(function(g)
        local r = g:start(function(started)
          local me = tether.current_task()
          g:spawn(function()           -- waits on the task while g:start does
            me:wait()
            log[#log + 1] = "waiter"
          end)
          tether.sleep(0)
          tether.sleep(0)
          started("up")
          tether.sleep(0)
          log[#log + 1] = "task done"
        end)
        log[#log + 1] = "started " .. r
        return r
      end)
    end)
    assert.are.equal("up", v)
    assert.are.same({ "started up", "task done", "waiter" }, log)
  end)

  it("keeps the started value only until its caller took it", function()
    local weak = setmetatable({}, { __mode = "v" })
    tether.run(function()
      tether.with_group(function(g)
        local keep
        g:start(function(started)
          keep = started
          local v = {}
          weak[1] = v
          started(v)
        end)
        collectgarbage()
        collectgarbage()
        assert.is_nil(weak[1])         -- neither the task nor its started() holds it
        assert.is_truthy(keep)
      end)
    end)
  end)

  it("can be called from a child task holding the group", function()
    local got
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function()
          got = g:start(function(started, x) started(x * 2) end, 21)
        end)
      end)
    end)
    assert.are.equal(42, got)
  end)
end)

describe("g:start when the task fails before started", function()
  it("raises that very error in the caller, not wrapped in an ErrorGroup", function()
    local e = { "bind failed" }
    local got
    tether.run(function()
      tether.with_group(function(g)
        local ok, err = pcall(g.start, g, function(started)
          tether.checkpoint()
          error(e)
          started()
        end)
        assert(not ok)
        got = err
      end)
    end)
    assert.are.equal(e, got)
  end)

  it("does not fail or cancel the group: siblings keep running", function()
    local sibling
    local got = tether.run(function()
      return tether.with_group(function(g)
        sibling = g:spawn(function()
          for _ = 1, 5 do tether.checkpoint() end
          tether.sleep(0.001)
          return "sibling done"
        end)
        local ok = pcall(g.start, g, function() error("early", 0) end)
        assert(not ok)
        tether.checkpoint()
        return "body done"
      end)
    end)
    assert.are.equal("body done", got)
    assert.is_false(sibling:cancelled())
    assert.are.equal("sibling done", sibling:result())
  end)

  it("when not caught, fails the group through the body, reported once", function()
    local e = { "bind failed" }
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:start(function() error(e) end)
      end)
    end)
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal(1, err.errors.n)
    assert.are.equal(e, err.errors[1])
  end)
end)

describe("g:start when the task finishes without calling started", function()
  it("raises a clear error in the caller", function()
    local msg
    local got = tether.run(function()
      return tether.with_group(function(g)
        local ok, err = pcall(g.start, g, function() return "forgot" end)
        assert(not ok)
        msg = tostring(err)
        return "body continues"
      end)
    end)
    assert.are.equal("body continues", got)
    assert.matches("started", msg, 1, true)
  end)
end)

describe("g:start while its group is failing", function()
  it("is interrupted by a sibling's failure, which alone is reported", function()
    local start_err
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn(function()
          tether.checkpoint()
          error("sibling failed", 0)
        end)
        local ok, e = pcall(g.start, g, function(started)
          tether.sleep_forever()
          started()
        end)
        start_err = e
        if not ok then error(e, 0) end
      end)
    end)
    assert.is_true(is_cancelled(start_err))
    assert.are.equal(1, err.errors.n)
    assert.are.equal("sibling failed", err.errors[1])
  end)
end)

describe("g:start into a closed group", function()
  it("is a clear error and the function never runs", function()
    local ran, msg = false, nil
    tether.run(function()
      local g = tether.with_group(function(g) return g end)
      local ok, e = pcall(g.start, g, function(started) ran = true; started() end)
      assert(not ok)
      msg = tostring(e)
    end)
    assert.is_false(ran)
    assert.matches("closed", msg, 1, true)
  end)
end)
