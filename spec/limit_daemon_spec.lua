-- Group options: limit (bounded concurrency), supervisor policy, daemon tasks (contract section 1).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local error_of, wait_until, is_cancelled = support.error_of, support.wait_until, support.is_cancelled

describe("a group with limit = n", function()
  it("never runs more than n children at once, and runs them all", function()
    local running, most, finished = 0, 0, 0
    tether.run(function()
      tether.with_group({ limit = 3 }, function(g)
        for i = 1, 12 do
          g:spawn(function()
            running = running + 1
            if running > most then most = running end
            for _ = 1, 3 do tether.checkpoint() end
            if i % 2 == 0 then tether.sleep(0.001) end
            running = running - 1
            finished = finished + 1
          end)
        end
      end)
    end)
    assert.are.equal(12, finished)
    assert.are.equal(3, most)
  end)

  it("counts tasks spawned by children and by other tasks too", function()
    local running, most, finished = 0, 0, 0
    local function work()
      running = running + 1
      if running > most then most = running end
      tether.checkpoint()
      tether.checkpoint()
      running = running - 1
      finished = finished + 1
    end
    tether.run(function()
      tether.with_group({ limit = 2 }, function(g)
        tether.with_group(function(helpers)
          for _ = 1, 3 do
            helpers:spawn(function()
              for _ = 1, 3 do g:spawn(work) end
            end)
          end
        end)
      end)
    end)
    assert.are.equal(9, finished)
    assert.is_true(most <= 2, "ran " .. most .. " at once")
  end)

  it("makes spawn wait while n children run", function()
    local log = {}
    tether.run(function()
      tether.with_group({ limit = 1 }, function(g)
        local first = g:spawn(function()
          tether.sleep(0.005)
          log[#log + 1] = "first finished"
        end)
        log[#log + 1] = "first spawned"
        g:spawn(function() log[#log + 1] = "second ran" end)
        log[#log + 1] = "second spawned"
        assert.is_true(first:done())
      end)
    end)
    assert.are.same({ "first spawned", "first finished", "second spawned", "second ran" }, log)
  end)

  it("does not make spawn a checkpoint while a slot is free", function()
    local log = {}
    tether.run(function()
      tether.with_group({ limit = 3 }, function(g)
        for i = 1, 3 do g:spawn(function() log[#log + 1] = "task " .. i end) end
        log[#log + 1] = "three spawned"
      end)
    end)
    assert.are.same({ "three spawned", "task 1", "task 2", "task 3" }, log)
  end)

  it("frees a slot when a child fails or is cancelled", function()
    local ran = 0
    local err = error_of(tether.run, function()
      tether.with_group({ limit = 1, policy = "supervisor" }, function(g)
        local t = g:spawn(tether.sleep_forever)
        tether.checkpoint()
        t:cancel()
        g:spawn(function() error("failed in its slot", 0) end)
        g:spawn(function() ran = ran + 1 end)
        g:spawn(function() ran = ran + 1 end)
      end)
    end)
    assert.are.equal(2, ran)
    assert.are.equal(1, err.errors.n)
    assert.are.equal("failed in its slot", err.errors[1])
  end)

  it("cancels a body waiting for a free slot when a child fails", function()
    local spawn_err, never_ran = nil, true
    local err = error_of(tether.run, function()
      tether.with_group({ limit = 1 }, function(g)
        g:spawn(function()
          tether.checkpoint()
          error("child failed", 0)
        end)
        local ok, e = pcall(g.spawn, g, function() never_ran = false end)
        spawn_err = e
        if not ok then error(e, 0) end
      end)
    end)
    assert.is_true(is_cancelled(spawn_err))
    assert.is_true(never_ran)
    assert.are.equal(1, err.errors.n)
    assert.are.equal("child failed", err.errors[1])
  end)
end)

describe("a supervisor group", function()
  it("does not cancel siblings when a child fails, and raises every error at the end", function()
    local slow, body_finished
    local err = error_of(tether.run, function()
      tether.with_group({ policy = "supervisor" }, function(g)
        g:spawn({ name = "a" }, function() error("a failed", 0) end)
        slow = g:spawn({ name = "slow" }, function()
          for _ = 1, 5 do tether.checkpoint() end
          tether.sleep(0.005)
          return "slow ok"
        end)
        g:spawn({ name = "c" }, function()
          tether.checkpoint()
          tether.checkpoint()
          error("c failed", 0)
        end)
        for _ = 1, 5 do tether.checkpoint() end
        tether.sleep(0.001)
        body_finished = true
      end)
    end)
    assert.is_true(body_finished)
    assert.are.equal("slow ok", slow:result())
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal(2, err.errors.n)
    assert.are.same({ "a failed", "c failed" }, { err.errors[1], err.errors[2] })
    assert.are.equal("a", err:info(1).task)
    assert.are.equal("c", err:info(2).task)
  end)

  it("returns the body's results when nothing failed", function()
    local got = tether.run(function()
      return tether.with_group({ policy = "supervisor" }, function(g)
        g:spawn(tether.checkpoint)
        return "fine"
      end)
    end)
    assert.are.equal("fine", got)
  end)

  it("still cancels the children when the body fails", function()
    local seen
    local err = error_of(tether.run, function()
      tether.with_group({ policy = "supervisor" }, function(g)
        g:spawn(function()
          local ok, e = pcall(tether.sleep_forever)
          seen = e
          if not ok then error(e, 0) end
        end)
        tether.checkpoint()
        error("body failed", 0)
      end)
    end)
    assert.is_true(is_cancelled(seen))
    assert.are.equal(1, err.errors.n)
    assert.are.equal("body failed", err.errors[1])
  end)

  it("can still be cancelled with g:cancel", function()
    local n = select("#", tether.run(function()
      return tether.with_group({ policy = "supervisor" }, function(g)
        g:spawn(tether.sleep_forever)
        g:spawn(function()
          tether.checkpoint()
          g:cancel("done")
        end)
        tether.sleep_forever()
      end)
    end))
    assert.are.equal(0, n)
  end)
end)

describe("a daemon task", function()
  it("is cancelled without error once the body and every other task have finished", function()
    local seen, daemon
    local got = tether.run(function()
      return tether.with_group(function(g)
        daemon = g:spawn({ daemon = true, name = "heartbeat" }, function()
          local ok, e = pcall(tether.sleep_forever)
          seen = e
          if not ok then error(e, 0) end
        end)
        g:spawn(function() tether.sleep(0.005) end)
        return "main work done"
      end)
    end)
    assert.are.equal("main work done", got)
    assert.is_true(is_cancelled(seen))
    assert.is_true(daemon:cancelled())
    assert.is_false(daemon:failed())
  end)

  it("serves the main work while it runs, then its cleanup runs", function()
    local requests, replies, log = {}, {}, {}
    tether.run(function()
      tether.with_group(function(g)
        g:spawn({ daemon = true }, function()
          local _ <close> = setmetatable({}, { __close = function() log[#log + 1] = "server closed" end })
          while true do
            if #requests > 0 then
              local r = table.remove(requests, 1)
              replies[r] = r * r
            end
            tether.checkpoint()
          end
        end)
        for i = 1, 3 do
          g:spawn(function()
            requests[#requests + 1] = i
            wait_until(function() return replies[i] end)
            log[#log + 1] = "client " .. i .. " got " .. replies[i]
          end)
        end
      end)
    end)
    table.sort(log)
    assert.are.same({ "client 1 got 1", "client 2 got 4", "client 3 got 9", "server closed" }, log)
  end)

  it("is not cancelled while a non-daemon task still runs", function()
    local daemon_alive_at_end
    tether.run(function()
      tether.with_group(function(g)
        local daemon = g:spawn({ daemon = true }, tether.sleep_forever)
        g:spawn(function()
          tether.sleep(0.01)
          for _ = 1, 5 do tether.checkpoint() end
          daemon_alive_at_end = not daemon:done()
        end)
      end)
    end)
    assert.is_true(daemon_alive_at_end)
  end)

  it("is not cancelled while the body still runs", function()
    local alive_after_body_work
    tether.run(function()
      tether.with_group(function(g)
        local daemon = g:spawn({ daemon = true }, tether.sleep_forever)
        tether.sleep(0.005)
        for _ = 1, 5 do tether.checkpoint() end
        alive_after_body_work = not daemon:done()
      end)
    end)
    assert.is_true(alive_after_body_work)
  end)

  it("raises its real errors like any task", function()
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn({ daemon = true, name = "bad daemon" }, function()
          tether.checkpoint()
          error("daemon broke", 0)
        end)
        tether.sleep_forever()
      end)
    end)
    assert.are.equal(1, err.errors.n)
    assert.are.equal("daemon broke", err.errors[1])
    assert.are.equal("bad daemon", err:info(1).task)
  end)

  it("reports an error its cleanup raises after it was cancelled", function()
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn({ daemon = true }, function()
          pcall(tether.sleep_forever)
          error("daemon cleanup failed", 0)
        end)
      end)
    end)
    assert.are.equal(1, err.errors.n)
    assert.are.equal("daemon cleanup failed", err.errors[1])
  end)
end)
