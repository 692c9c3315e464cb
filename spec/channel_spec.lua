-- Memory channels (contract section 7): FIFO, rendezvous and unbounded, clone/close bookkeeping, errors, cancellation safety.
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local error_of, msg_of, wait_until, is_cancelled = support.error_of, support.msg_of, support.wait_until,
  support.is_cancelled

local function in_group(body)
  return tether.run(function() return tether.with_group(body) end)
end

local function waiting(what, n)
  return function()
    local _, k = tether.dump():gsub(what, "")
    return k == (n or 1)
  end
end

describe("tether.channel", function()
  it("delivers values in order, at every capacity, and `for v in recv` ends when the senders close", function()
    for _, cap in ipairs { 0, 1, 3, 100, math.huge } do
      local got = {}
      in_group(function(g)
        local send, recv = tether.channel(cap)
        g:spawn(function()
          for i = 1, 250 do send:send(i) end
          send:close()
        end)
        g:spawn(function()
          for v in recv do got[#got + 1] = v end
        end)
      end)
      assert.are.equal(250, #got, "capacity " .. tostring(cap))
      for i = 1, 250 do assert.are.equal(i, got[i]) end
    end
  end)

  it("capacity 0 is a rendezvous: send returns only once a receiver took the value", function()
    local log = {}
    in_group(function(g)
      local send, recv = tether.channel(0)
      g:spawn(function()
        send:send("a")
        log[#log + 1] = "sent a"
      end)
      for _ = 1, 5 do tether.checkpoint() end
      log[#log + 1] = "receiving"
      assert.are.equal("a", recv:receive())
    end)
    assert.are.same({ "receiving", "sent a" }, log)
  end)

  it("a bounded channel makes senders wait while full (back-pressure); math.huge never does", function()
    in_group(function(g)
      local send, recv = tether.channel(2)
      local sent = 0
      g:spawn(function()
        for i = 1, 5 do send:send(i); sent = sent + 1 end
      end)
      wait_until(waiting("send to channel"))
      assert.are.equal(2, sent)
      assert.are.equal(2, send:statistics().current_buffer_used)
      assert.are.equal(1, recv:receive())
      wait_until(function() return sent == 3 end)
      for i = 2, 5 do assert.are.equal(i, recv:receive()) end
      local s2, r2 = tether.channel(math.huge)
      for i = 1, 10000 do s2:send_nowait(i) end
      assert.are.equal(10000, r2:statistics().current_buffer_used)
      assert.are.equal(math.huge, r2:statistics().max_buffer_size)
      for i = 1, 10000 do assert.are.equal(i, r2:receive_nowait()) end
    end)
  end)

  it("wakes waiting receivers and senders in FIFO order", function()
    local order = {}
    in_group(function(g)
      local send, recv = tether.channel(0)
      for i = 1, 5 do g:spawn(function() local v = recv:receive(); order[#order + 1] = { i, v } end) end
      wait_until(waiting("receive from channel", 5))
      for v = 10, 14 do send:send(v) end
      local s2, r2 = tether.channel(0)
      for i = 1, 5 do g:spawn(function() s2:send(i) end) end
      wait_until(waiting("send to channel", 5))
      for i = 1, 5 do assert.are.equal(i, r2:receive()) end
    end)
    assert.are.same({ { 1, 10 }, { 2, 11 }, { 3, 12 }, { 4, 13 }, { 5, 14 } }, order)
  end)

  it("send and receive are checkpoints even on the fast path; the _nowait forms are not", function()
    local log = {}
    in_group(function(g)
      local send, recv = tether.channel(10)
      g:spawn(function()
        log[#log + 1] = "a1"
        send:send(1)
        log[#log + 1] = "a2"
        recv:receive()
        log[#log + 1] = "a3"
        send:send_nowait(2)
        recv:receive_nowait()
        log[#log + 1] = "a4"
      end)
      g:spawn(function()
        log[#log + 1] = "b1"
        tether.checkpoint()
        log[#log + 1] = "b2"
      end)
    end)
    assert.are.same({ "a1", "b1", "a2", "b2", "a3", "a4" }, log)
  end)

  it("send and receive in a cancelled scope raise Cancelled and do nothing", function()
    tether.run(function()
      local send, recv = tether.channel(5)
      send:send_nowait("kept")
      local sc = tether.cancel_scope({})
      sc:run(function()
        sc:cancel()
        assert.is_true(is_cancelled(error_of(send.send, send, "never")))
        assert.is_true(is_cancelled(error_of(recv.receive, recv)))
      end)
      assert.are.equal(1, recv:statistics().current_buffer_used)
      assert.are.equal("kept", recv:receive_nowait())
    end)
  end)

  it("rejects nil, bad capacities and unknown options", function()
    local send, recv = tether.channel(1)
    assert.matches("bad argument #2 to 'send:send_nowait' %(nil cannot be sent", msg_of(function() send:send_nowait(nil) end))
    tether.run(function()
      assert.matches("bad argument #2 to 'send:send' %(nil cannot be sent", msg_of(function() send:send(nil) end))
      assert.matches("nil cannot be sent", msg_of(function() send:send() end))
    end)
    assert.matches("capacity expected", msg_of(function() tether.channel() end))
    assert.matches("integer >= 0", msg_of(function() tether.channel(-1) end))
    assert.matches("integer >= 0", msg_of(function() tether.channel(1.5) end))
    assert.matches("unknown option 'size'", msg_of(function() tether.channel(1, { size = 2 }) end))
    assert.matches("bad self for 'send:send'", msg_of(function() send.send(recv, 1) end))
    assert.matches("bad self for 'recv:receive'", msg_of(function() recv.receive(send) end))
    assert.is_true(tether.WouldBlock:is(error_of(function() recv:receive_nowait() end)))
    send:send_nowait(true)
    assert.is_true(tether.WouldBlock:is(error_of(function() send:send_nowait(false) end)))
    assert.is_false(recv:receive_nowait() == nil)
  end)

  it("ends with EndOfChannel once every sender clone is closed and the buffer is drained", function()
    tether.run(function()
      local send, recv = tether.channel(10)
      local s2 = send:clone()
      send:send_nowait(1)
      send:close()
      send:close()                            -- idempotent
      s2:send_nowait(2)
      assert.are.equal(1, s2:statistics().open_send_channels)
      s2:close()
      assert.are.equal(1, recv:receive())
      assert.are.equal(2, recv:receive_nowait())
      local e = error_of(recv.receive, recv)
      assert.is_true(tether.EndOfChannel:is(e))
      assert.is_true(tether.Error:is(e))
      assert.is_true(tether.EndOfChannel:is(error_of(recv.receive_nowait, recv)))
      local n = 0
      for _ in recv do n = n + 1 end
      assert.are.equal(0, n)
    end)
  end)

  it("wakes receivers blocked when the last sender closes, with EndOfChannel (not before)", function()
    in_group(function(g)
      local send, recv = tether.channel(0)
      local s2 = send:clone()
      local errs = {}
      for i = 1, 3 do
        g:spawn(function() errs[i] = error_of(recv.receive, recv) end)
      end
      wait_until(waiting("receive from channel", 3))
      send:close()
      for _ = 1, 3 do tether.checkpoint() end
      assert.are.equal(0, #errs)              -- s2 is still open
      s2:close()
      wait_until(function() return #errs == 3 end)
      for i = 1, 3 do assert.is_true(tether.EndOfChannel:is(errs[i])) end
    end)
  end)

  it("raises BrokenResourceError on send once every receiver is closed, also in blocked senders", function()
    in_group(function(g)
      local send, recv = tether.channel(1)
      local r2 = recv:clone()
      send:send(1)
      local e
      g:spawn(function() e = error_of(send.send, send, 2) end)
      wait_until(waiting("send to channel"))
      recv:close()
      tether.checkpoint()
      assert.is_nil(e)
      r2:close()
      wait_until(function() return e ~= nil end)
      assert.is_true(tether.BrokenResourceError:is(e))
      assert.is_true(tether.IOError:is(e))
      assert.is_true(tether.BrokenResourceError:is(error_of(send.send_nowait, send, 3)))
      assert.are.equal(0, send:statistics().current_buffer_used)   -- dropped with the receivers
    end)
  end)

  it("raises ClosedResourceError (code EBADF) on a closed endpoint, also in a task blocked on it", function()
    in_group(function(g)
      local send, recv = tether.channel(0, { name = "jobs" })
      local r2 = recv:clone()
      local e_blocked, e_other
      g:spawn(function() e_blocked = error_of(recv.receive, recv) end)
      g:spawn(function() e_other = recv:statistics() and r2:receive() end)
      wait_until(waiting("receive from channel 'jobs'", 2))
      recv:close()
      wait_until(function() return e_blocked ~= nil end)
      assert.is_true(tether.ClosedResourceError:is(e_blocked))
      assert.are.equal("EBADF", e_blocked.code)
      send:send("to r2")                      -- the other clone still receives
      wait_until(function() return e_other ~= nil end)
      assert.are.equal("to r2", e_other)
      assert.is_true(tether.ClosedResourceError:is(error_of(recv.receive_nowait, recv)))
      assert.is_true(tether.ClosedResourceError:is(error_of(recv.clone, recv)))
      send:close()
      assert.is_true(tether.ClosedResourceError:is(error_of(send.send_nowait, send, 1)))
      assert.is_true(tether.ClosedResourceError:is(error_of(send.send, send, 1)))
      local s3, _ = tether.channel(0)
      local es
      g:spawn(function() es = error_of(s3.send, s3, "x") end)
      wait_until(waiting("send to channel"))
      s3:close()
      wait_until(function() return es ~= nil end)
      assert.is_true(tether.ClosedResourceError:is(es))
      assert.matches("tether.SendChannel 'jobs' %(closed%)", tostring(send))
    end)
  end)

  it("close is also __close and __gc", function()
    tether.run(function()
      local send, recv = tether.channel(1)
      do
        local s <close> = send:clone()
        assert.are.equal(2, recv:statistics().open_send_channels)
      end
      assert.are.equal(1, recv:statistics().open_send_channels)
      do local _ = send:clone() end
      collectgarbage(); collectgarbage()
      assert.are.equal(1, recv:statistics().open_send_channels)
      send = nil
      collectgarbage(); collectgarbage()
      assert.is_true(tether.EndOfChannel:is(error_of(recv.receive_nowait, recv)))
    end)
  end)

  it("a cancelled send delivered nothing, a cancelled receive took nothing (counted)", function()
    in_group(function(g)
      local send, recv = tether.channel(1)
      send:send("first")
      local s = g:spawn(function() send:send("cancelled") end)
      wait_until(waiting("send to channel"))
      s:cancel()
      s:wait()
      assert.is_true(s:cancelled())
      assert.are.equal("first", recv:receive())
      assert.is_true(tether.WouldBlock:is(error_of(recv.receive_nowait, recv)))

      local r = g:spawn(function() recv:receive() end)
      wait_until(waiting("receive from channel"))
      r:cancel()
      r:wait()
      assert.is_true(r:cancelled())
      send:send_nowait("stays")               -- into the buffer: nobody waits any more
      assert.are.equal(1, recv:statistics().current_buffer_used)
      assert.are.equal("stays", recv:receive())

      local s0, r0 = tether.channel(0)
      local rr = g:spawn(function() r0:receive() end)
      wait_until(waiting("receive from channel"))
      rr:cancel()
      rr:wait()
      assert.is_true(tether.WouldBlock:is(error_of(s0.send_nowait, s0, "x")))  -- no receiver left waiting
    end)
  end)

  it("a receiver handed a value and cancelled in the same tick returns it; the cancel comes at its next checkpoint", function()
    local got, after
    in_group(function(g)
      local send, recv = tether.channel(0)
      local r = g:spawn(function()
        got = recv:receive()
        local ok, e = pcall(tether.checkpoint)
        after = not ok and is_cancelled(e)
        error(e, 0)
      end)
      wait_until(waiting("receive from channel"))
      send:send_nowait("handed")              -- r is handed the value ...
      r:cancel()                              -- ... and cancelled before it runs
      r:wait()
      assert.is_true(r:cancelled())
    end)
    assert.are.equal("handed", got)
    assert.is_true(after)
  end)

  it("a sender whose value was taken, cancelled in the same tick, returns normally", function()
    local returned
    in_group(function(g)
      local send, recv = tether.channel(1)
      send:send_nowait(1)
      local s = g:spawn(function()
        send:send(2)
        returned = true
        tether.checkpoint()
      end)
      wait_until(waiting("send to channel"))
      assert.are.equal(1, recv:receive_nowait())   -- takes 1, moves 2 into the buffer
      s:cancel()
      s:wait()
      assert.are.equal(2, recv:receive_nowait())
    end)
    assert.is_true(returned)
  end)

  it("tether.dump() shows what a task waits on, with the channel's name", function()
    local text
    in_group(function(g)
      local send, recv = tether.channel(0, { name = "jobs" })
      local _, r2 = tether.channel(0)
      g:spawn(function() recv:receive() end)
      g:spawn(function() r2:receive() end)
      wait_until(waiting("receive from channel", 2))
      text = tether.dump()
      g:cancel()
      send:close()
    end)
    assert.matches("waits on receive from channel 'jobs' at ", text)
    assert.matches("waits on receive from channel at ", text)
  end)

  it("a run blocked on a channel that nobody closes is reported as a deadlock", function()
    local cleaned = false
    local ok, err = pcall(tether.run, function()
      local send, recv = tether.channel(0, { name = "jobs" })
      tether.with_group(function(g)
        g:spawn(function()
          local _ <close> = setmetatable({}, { __close = function() cleaned = true end })
          for _ in recv do end
        end)
        send:send(1)
      end)
    end)
    assert.is_false(ok)
    assert.matches("deadlock", tostring(err))
    assert.is_true(cleaned)
  end)

  it("keeps values that are tables, false and userdata as sent", function()
    tether.run(function()
      local send, recv = tether.channel(math.huge)
      local t = {}
      send:send(t); send:send(false); send:send(0); send:send(io.stdout)
      assert.are.equal(t, recv:receive())
      assert.are.equal(false, recv:receive())
      assert.are.equal(0, recv:receive())
      assert.are.equal(io.stdout, recv:receive())
    end)
  end)
end)
