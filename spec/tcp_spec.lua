-- TCP: connect, listen, accept, serve, the socket methods, TCP streams under cancellation and hostile peers (contract §6.0-6.2, §6.9).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path
local support = require("support")
local net = require("netsupport")

local is_cancelled = support.is_cancelled
local error_of = support.error_of
local ROOT = SPEC_DIR:match("^(.*)/spec$") or "."
local run = function(fn) return net.fd_checked(function() return tether.run(fn) end) end

-- A connected pair over loopback: client, server side.
local function pair()
  local l <close> = tether.tcp.listen(0)
  local c = tether.tcp.connect("127.0.0.1", l.port)
  local s = l:accept()
  return c, s
end

describe("tcp", function()
  describe("listen and connect", function()
    it("binds the loopback address and a free port by default", function()
      local host, port = run(function()
        local l <close> = tether.tcp.listen(0)
        return l.host, l.port
      end)
      assert.equal("127.0.0.1", host)
      assert.is_true(port > 0)
    end)

    it("connects, accepts, and both sides name each other", function()
      local r = run(function()
        local l <close> = tether.tcp.listen(0)
        local c <close> = tether.tcp.connect("127.0.0.1", l.port)
        local s <close> = l:accept()
        local ca, cp = c:getsockname()
        local sa, sp = s:getpeername()
        local pa, pp = c:getpeername()
        return { ca = ca, cp = cp, sa = sa, sp = sp, pa = pa, pp = pp, port = l.port }
      end)
      assert.equal("127.0.0.1", r.ca)
      assert.equal(r.ca, r.sa)
      assert.equal(r.cp, r.sp)
      assert.equal("127.0.0.1", r.pa)
      assert.equal(r.port, r.pp)
    end)

    it("connects to a name (resolved, tried as RFC 8305 says)", function()
      local name = net.localname()
      if not name then pending("no /etc/hosts entry for localhost: nothing to resolve offline") return end
      local ok = run(function()
        local l <close> = tether.tcp.listen(0)
        local c <close> = tether.tcp.connect(name, l.port)
        local s <close> = l:accept()
        c:write("hi")
        return s:read() == "hi"
      end)
      assert.is_true(ok)
    end)

    it("binds every interface with host = '*' and a given address otherwise", function()
      local h1, h2 = run(function()
        local a <close> = tether.tcp.listen(0, { host = "*" })
        local b <close> = tether.tcp.listen(0, { host = "127.0.0.1", backlog = 4 })
        local c <close> = tether.tcp.connect("127.0.0.1", a.port)
        return a.host, b.host
      end)
      assert.is_true(h1 == "::" or h1 == "0.0.0.0", h1)
      assert.equal("127.0.0.1", h2)
    end)

    it("raises ECONNREFUSED for a closed port, with the context and every attempt", function()
      local e = run(function()
        local l = tether.tcp.listen(0)
        local port = l.port
        l:close()
        return error_of(tether.tcp.connect, "127.0.0.1", port)
      end)
      assert.is_true(tether.IOError:is(e))
      assert.equal("ECONNREFUSED", e.code)
      assert.equal("connect", e.op)
      assert.equal("127.0.0.1", e.host)
      assert.matches("^IOError: ECONNREFUSED: connection refused %(connect 127%.0%.0%.1:%d+%)$", tostring(e))
      assert.equal(1, e.errors.n)
      assert.equal("ECONNREFUSED", e.errors[1].code)
    end)

    it("raises EADDRINUSE when the port is taken", function()
      local e = run(function()
        local l <close> = tether.tcp.listen(0)
        return error_of(tether.tcp.listen, l.port)
      end)
      assert.equal("EADDRINUSE", e.code)
      assert.equal("listen", e.op)
    end)

    it("raises an EAI_ error for a name that does not resolve", function()
      local e = run(function()
        return error_of(tether.tcp.connect, "no-such-host.invalid", 80)
      end)
      assert.is_true(tether.IOError:is(e))
      assert.matches("^EAI_", e.code)
      assert.equal("no-such-host.invalid", e.host)
    end)

    it("rejects bad arguments at the call site", function()
      local msgs = tether.run(function()
        local m = {}
        local function msg(...) return tostring(error_of(...)) end
        m[1] = msg(tether.tcp.connect, "127.0.0.1", 70000)
        m[2] = msg(tether.tcp.connect, "127.0.0.1", 0)
        m[3] = msg(tether.tcp.connect, true, 80)
        m[4] = msg(tether.tcp.connect, "127.0\0.0.1", 80)
        m[5] = msg(tether.tcp.listen, -1)
        m[6] = msg(tether.tcp.listen, 0, { hots = "x" })
        m[7] = msg(tether.tcp.listen, 0, { backlog = 0 })
        m[8] = msg(tether.tcp.connect, "127.0.0.1", 1.5)
        m[9] = msg(tether.tcp.serve, 42, 0)
        m[10] = msg(tether.tcp.serve, function() end, 0, { limit = 0 })
        m[11] = msg(tether.tcp.connect, "127.0.0.1", "http")
        return m
      end)
      assert.matches("bad argument #2 to 'tether.tcp.connect' %(port out of range", msgs[1])
      assert.matches("port out of range", msgs[2])
      assert.matches("bad argument #1 to 'tether.tcp.connect' %(host: string expected, got boolean", msgs[3])
      assert.matches("NUL", msgs[4])
      assert.matches("bad argument #1 to 'tether.tcp.listen' %(port out of range", msgs[5])
      assert.matches("unknown option 'hots'", msgs[6])
      assert.matches("backlog", msgs[7])
      assert.matches("integer expected", msgs[8])
      assert.matches("handler: function expected", msgs[9])
      assert.matches("limit", msgs[10])
      assert.matches("port", msgs[11])
    end)

    it("is a clear error outside tether.run", function()
      assert.matches("outside tether.run", tostring(error_of(tether.tcp.connect, "127.0.0.1", 80)))
    end)

    it("sets TCP_NODELAY by default, and set_nodelay/set_keepalive work", function()
      run(function()
        local c, s = pair()
        c:set_nodelay(false)
        c:set_nodelay(true)
        c:set_keepalive(true, 30)
        s:set_keepalive(false)
        c:close()
        s:close()
        local e = error_of(c.set_nodelay, c, true)
        assert.is_true(tether.ClosedResourceError:is(e))
      end)
    end)
  end)

  describe("happy eyeballs (an array of addresses)", function()
    -- a listener on 127.0.0.2 whose queue is full (connects to it hang), and
    -- a good one on 127.0.0.1, on the same port
    local function hanging_and_good()
      local good = tether.tcp.listen(0)
      local port = good.port
      local bad = tether.tcp.listen(port, { host = "127.0.0.2", backlog = 1 })
      local fill = {}
      for _ = 1, 64 do
        local ok, c = tether.move_on_after(0.3, tether.tcp.connect, "127.0.0.2", port)
        if not ok then break end
        fill[#fill + 1] = c
      end
      return port, function()
        for _, f in ipairs(fill) do f:close() end
        bad:close()
        good:close()
      end
    end

    it("starts the next attempt after 0.25 s when one hangs, and the first success wins", function()
      local elapsed, peer = run(function()
        local port, done = hanging_and_good()
        local before = tether.stats().io
        local t0 = tether.now()
        local c = tether.tcp.connect({ "127.0.0.2", "127.0.0.1" }, port)
        local elapsed = tether.now() - t0
        local peer = c:getpeername()
        assert.equal(before + 1, tether.stats().io)  -- the hanging attempt was closed
        c:close()
        done()
        return elapsed, peer
      end)
      assert.equal("127.0.0.1", peer)
      assert.is_true(elapsed >= 0.25 - 1e-3, "the second attempt started early: " .. elapsed)
      assert.is_true(elapsed < 5, "too slow: " .. elapsed)
    end)

    it("starts the next attempt at once when one fails", function()
      local elapsed = run(function()
        local l <close> = tether.tcp.listen(0)
        local t0 = tether.now()
        local c <close> = tether.tcp.connect({ "::1", "127.0.0.1" }, l.port)
        return tether.now() - t0
      end)
      if not net.slow then
        assert.is_true(elapsed < 0.25, "waited for the stagger after a failure: " .. elapsed)
      end
    end)

    it("all attempts fail: the first attempt's code, and e.errors lists each", function()
      local e = run(function()
        local l = tether.tcp.listen(0)
        local port = l.port
        l:close()
        return error_of(tether.tcp.connect, { "127.0.0.1", "127.0.0.1" }, port)
      end)
      assert.equal("ECONNREFUSED", e.code)
      assert.equal(2, e.errors.n)
      for i = 1, 2 do
        assert.equal("ECONNREFUSED", e.errors[i].code)
        assert.equal("127.0.0.1", e.errors[i].host)
      end
    end)

    it("cancelled while two attempts hang: both are closed", function()
      run(function()
        local port, done = hanging_and_good()
        local before = net.fdcount()
        assert.is_false(tether.move_on_after(0.4, tether.tcp.connect, { "127.0.0.2", "127.0.0.2" }, port))
        assert.equal(before, net.fdcount())
        done()
      end)
    end)

    it("rejects an array with a name or nothing in it", function()
      local m1, m2 = tether.run(function()
        return tostring(error_of(tether.tcp.connect, { "localhost" }, 80)),
               tostring(error_of(tether.tcp.connect, {}, 80))
      end)
      assert.matches("numeric addresses", m1)
      assert.matches("numeric addresses", m2)
    end)
  end)

  describe("accept", function()
    it("cancelled before it starts: raises Cancelled and the connection waits for the next accept", function()
      local got = run(function()
        local l <close> = tether.tcp.listen(0)
        local c <close> = tether.tcp.connect("127.0.0.1", l.port)
        tether.sleep(0.01)
        local scope = tether.cancel_scope({})
        local raised
        scope:run(function()
          scope:cancel()
          local ok, e = pcall(l.accept, l)
          raised = not ok and is_cancelled(e)
        end)
        assert.is_true(raised)
        local s <close> = l:accept()
        c:write("x")
        return s:read()
      end)
      assert.equal("x", got)
    end)

    it("cancelled while blocked: wakes promptly and loses no later connection", function()
      local got = run(function()
        local l <close> = tether.tcp.listen(0)
        local t0 = tether.now()
        assert.is_false(tether.move_on_after(0.05, l.accept, l))
        assert.is_true(tether.now() - t0 < 5)
        local c <close> = tether.tcp.connect("127.0.0.1", l.port)
        local s <close> = l:accept()
        s:write("y")
        return c:read()
      end)
      assert.equal("y", got)
    end)

    it("cancelled just after it completed: the stream is returned, and closing it leaves nothing", function()
      local got = run(function()
        local l <close> = tether.tcp.listen(0)
        local c <close> = tether.tcp.connect("127.0.0.1", l.port)
        local scope = tether.cancel_scope({})
        local got
        scope:run(function()
          local s <close> = l:accept()
          got = s ~= nil
          scope:cancel()
          tether.checkpoint()
          got = "not cancelled"
        end)
        return got
      end)
      assert.is_true(got)
    end)

    it("a listener closed by another task raises ClosedResourceError in the blocked accept", function()
      local e = run(function()
        local l = tether.tcp.listen(0)
        local err
        tether.with_group(function(g)
          g:spawn(function() err = error_of(l.accept, l) end)
          tether.sleep(0.01)
          l:close()
        end)
        return err
      end)
      assert.is_true(tether.ClosedResourceError:is(e))
      assert.equal("EBADF", e.code)
    end)

    it("two accepting tasks: the second gets BusyResourceError", function()
      local e = run(function()
        local l <close> = tether.tcp.listen(0)
        local err
        tether.with_group(function(g)
          g:spawn(function() pcall(l.accept, l) end)
          tether.sleep(0.01)
          err = error_of(l.accept, l)
          g:cancel()
        end)
        return err
      end)
      assert.is_true(tether.BusyResourceError:is(e))
    end)

    it("close is idempotent, and accept after close raises ClosedResourceError", function()
      local e = run(function()
        local l = tether.tcp.listen(0)
        l:close()
        l:close()
        assert.is_true(l.closed)
        return error_of(l.accept, l)
      end)
      assert.is_true(tether.ClosedResourceError:is(e))
    end)
  end)

  describe("connect under cancellation", function()
    it("cancelled before it starts: raises Cancelled and opens nothing", function()
      run(function()
        local l <close> = tether.tcp.listen(0)
        local before = tether.stats().io
        local scope = tether.cancel_scope({})
        scope:run(function()
          scope:cancel()
          local ok, e = pcall(tether.tcp.connect, "127.0.0.1", l.port)
          assert.is_false(ok)
          assert.is_true(is_cancelled(e))
        end)
        assert.equal(before, tether.stats().io)
      end)
    end)

    it("cancelled while blocked: wakes promptly and leaves no socket", function()
      run(function()
        local l, close_all = net.full_listener()
        local before = net.fdcount()
        local t0 = tether.now()
        assert.is_false(tether.move_on_after(0.1, tether.tcp.connect, "127.0.0.1", l.port))
        assert.is_true(tether.now() - t0 < 5)
        assert.equal(before, net.fdcount())
        close_all()
      end)
    end)

    it("cancelled while resolving a name: Cancelled, nothing left", function()
      local name = net.localname()
      if not name then pending("no /etc/hosts entry for localhost: nothing to resolve offline") return end
      run(function()
        local ok = tether.move_on_after(0, tether.tcp.connect, name, 9)
        assert.is_false(ok)
      end)
    end)

    it("cancelled just after it completed: returns the stream; cancel comes at the next checkpoint", function()
      local r = run(function()
        local l <close> = tether.tcp.listen(0)
        local scope = tether.cancel_scope({})
        local got, raised
        scope:run(function()
          local c <close> = tether.tcp.connect("127.0.0.1", l.port)
          got = c ~= nil
          scope:cancel()
          raised = not pcall(tether.checkpoint)
        end)
        return got and raised
      end)
      assert.is_true(r)
    end)
  end)

  describe("serve", function()
    it("runs a handler per connection and closes the stream when it returns", function()
      local r = run(function()
        return tether.with_group(function(g)
          local l = g:start(tether.tcp.serve, function(s)
            local line = s:read_line()
            s:write(line:upper(), "\n")
          end, 0)
          local out = {}
          for i = 1, 3 do
            local c <close> = tether.tcp.connect("127.0.0.1", l.port)
            c:write("hello " .. i .. "\n")
            out[i] = c:read_line()
            assert.is_nil(c:read())            -- the server closed it
          end
          g:cancel()
          return out
        end)
      end)
      assert.same({ "HELLO 1", "HELLO 2", "HELLO 3" }, r)
    end)

    it("a handler's error fails the server and is reported", function()
      local e = run(function()
        return error_of(tether.with_group, function(g)
          local l = g:start(tether.tcp.serve, function() error("handler broke") end, 0)
          local c <close> = tether.tcp.connect("127.0.0.1", l.port)
          tether.sleep(30)
        end)
      end)
      assert.is_true(tether.ErrorGroup:is(e))
      assert.matches("handler broke", tostring(e))
    end)

    it("opts.limit bounds the connections handled at once", function()
      local peak, served = run(function()
        local active, peak, served = 0, 0, 0
        tether.with_group(function(g)
          local l = g:start(tether.tcp.serve, function(s)
            active = active + 1
            peak = math.max(peak, active)
            s:read()
            tether.sleep(0.01)
            active = active - 1
            served = served + 1
          end, 0, { limit = 2 })
          tether.with_group(function(cg)
            for _ = 1, 6 do
              cg:spawn(function()
                local c <close> = tether.tcp.connect("127.0.0.1", l.port)
                c:write("x")
                c:read()
              end)
            end
          end)
          g:cancel()
        end)
        return peak, served
      end)
      assert.equal(2, peak)
      assert.equal(6, served)
    end)

    it("closes its listener when cancelled, and the port is free again", function()
      run(function()
        local port
        tether.with_group(function(g)
          port = g:start(tether.tcp.serve, function() end, 0).port
          g:cancel()
        end)
        local l <close> = tether.tcp.listen(port)
        assert.equal(port, l.port)
      end)
    end)

    it("ends when its listener is closed, after the running handlers", function()
      local done = run(function()
        local done = false
        tether.with_group(function(g)
          local l = g:start(tether.tcp.serve, function(s) tether.sleep(0.02); done = true end, 0)
          local c <close> = tether.tcp.connect("127.0.0.1", l.port)
          tether.sleep(0.01)
          l:close()
        end)
        return done
      end)
      assert.is_true(done)
    end)

    it("runs without g:start too (until cancelled)", function()
      assert.is_false(run(function()
        return tether.move_on_after(0.02, tether.tcp.serve, function() end, 0)
      end))
    end)
  end)

  describe("streams over TCP", function()
    it("echoes bytes both ways, NUL bytes included", function()
      local got = run(function()
        local c0, s0 = pair()
        local c <close> = c0
        local s <close> = s0
        local data = "a\0b\0\0c" .. string.rep("\0", 1000)
        c:write(data)
        return s:read_exactly(#data) == data
      end)
      assert.is_true(got)
    end)

    it("a peer that closes mid-read: the reader gets the bytes, then nil (EOF)", function()
      local r = run(function()
        local c0, s0 = pair()
        local c <close> = c0
        local s <close> = s0
        local got = {}
        tether.with_group(function(g)
          g:spawn(function()
            got[1] = s:read()
            got[2] = s:read()
            got[3] = s:read()
          end)
          tether.sleep(0.01)
          c:write("part")
          tether.sleep(0.01)
          c:close()
        end)
        return got
      end)
      assert.equal("part", r[1])
      assert.is_nil(r[2])
      assert.is_nil(r[3])
    end)

    it("a peer that closes mid-write: BrokenResourceError, never SIGPIPE", function()
      local e = run(function()
        local c0, s0 = pair()
        local c <close> = c0
        local s <close> = s0
        local err
        tether.with_group(function(g)
          g:spawn(function()
            err = error_of(function()
              local chunk = string.rep("x", 65536)
              for _ = 1, 10000 do c:write(chunk) end
            end)
          end)
          tether.sleep(0.05)
          s:close()
        end)
        return err
      end)
      assert.is_true(tether.BrokenResourceError:is(e), tostring(e))
    end)

    it("writing after the peer closed raises BrokenResourceError", function()
      local e = run(function()
        local c0, s0 = pair()
        local c <close> = c0
        local s <close> = s0
        s:close()
        tether.sleep(0.02)
        return error_of(function()
          for _ = 1, 100 do c:write(string.rep("y", 4096)); tether.sleep(0.001) end
        end)
      end)
      assert.is_true(tether.BrokenResourceError:is(e), tostring(e))
      assert.is_true(e.code == "EPIPE" or e.code == "ECONNRESET", e.code)
    end)

    it("a slow reader: the writer blocks and the reader's memory stays bounded", function()
      local r = run(function()
        local c0, s0 = pair()
        local c <close> = c0
        local s <close> = s0
        local written, blocked = 0, false
        tether.with_group(function(g)
          local w = g:spawn(function()
            local chunk = string.rep("z", 65536)
            for _ = 1, 1024 do           -- 64 MiB if nothing blocked
              c:write(chunk)
              written = written + #chunk
            end
          end)
          tether.sleep(0.2)
          blocked = not w:done()
          collectgarbage()
          local mem = collectgarbage("count")
          local total = 0
          while total < 1024 * 1024 do total = total + #s:read() end
          collectgarbage()
          assert.is_true(collectgarbage("count") - mem < 8 * 1024, "Lua memory grew")
          g:cancel()
        end)
        return { written = written, blocked = blocked }
      end)
      assert.is_true(r.blocked, "the writer never blocked")
      assert.is_true(r.written < 32 * 1024 * 1024, "wrote " .. r.written .. " bytes to a reader that did not read")
    end)

    it("two readers: the second gets BusyResourceError", function()
      local e = run(function()
        local c0, s0 = pair()
        local c <close> = c0
        local s <close> = s0
        local err
        tether.with_group(function(g)
          g:spawn(function() pcall(s.read, s) end)
          tether.sleep(0.01)
          err = error_of(s.read, s)
          c:write("x")
        end)
        return err
      end)
      assert.is_true(tether.BusyResourceError:is(e))
      assert.equal("EBUSY", e.code)
    end)

    it("a stream closed by another task raises ClosedResourceError in the blocked reader", function()
      local e = run(function()
        local c0, s = pair()
        local c <close> = c0
        local err
        tether.with_group(function(g)
          g:spawn(function() err = error_of(s.read, s) end)
          tether.sleep(0.01)
          s:close()
        end)
        return err
      end)
      assert.is_true(tether.ClosedResourceError:is(e))
    end)

    it("read_exactly at EOF raises IncompleteReadError with .partial", function()
      local e = run(function()
        local c0, s0 = pair()
        local c <close> = c0
        local s <close> = s0
        c:write("abc")
        c:close()
        return error_of(s.read_exactly, s, 10)
      end)
      assert.is_true(tether.IncompleteReadError:is(e))
      assert.equal("abc", e.partial)
    end)

    it("a cancelled read consumes nothing", function()
      local r = run(function()
        local c0, s0 = pair()
        local c <close> = c0
        local s <close> = s0
        assert.is_false(tether.move_on_after(0.02, s.read_exactly, s, 10))
        c:write("12345")
        assert.is_false(tether.move_on_after(0.02, s.read_exactly, s, 10))
        c:write("67890")
        return s:read_exactly(10)
      end)
      assert.equal("1234567890", r)
    end)

    it("a read cancelled before it starts leaves the stream usable", function()
      local r = run(function()
        local c0, s0 = pair()
        local c <close> = c0
        local s <close> = s0
        c:write("ok")
        local scope = tether.cancel_scope({})
        scope:run(function()
          scope:cancel()
          assert.is_false(pcall(s.read, s))
        end)
        return s:read()
      end)
      assert.equal("ok", r)
    end)

    it("a cancelled write closes the stream; later use raises ClosedResourceError", function()
      local e = run(function()
        local c0, s0 = pair()
        local c <close> = c0
        local s <close> = s0
        local chunk = string.rep("w", 1 << 20)
        local ok = tether.move_on_after(0.05, function()
          for _ = 1, 1000 do c:write(chunk) end
        end)
        assert.is_false(ok)
        return error_of(c.write, c, "more")
      end)
      assert.is_true(tether.ClosedResourceError:is(e))
    end)

    it("a 10 MB line raises ENOBUFS, loses nothing, and the next read works", function()
      local r = run(function()
        local c0, s0 = pair()
        local c <close> = c0
        local s <close> = s0
        local big = string.rep("L", 10 * 1024 * 1024)
        local e
        tether.with_group(function(g)
          g:spawn(function() c:write(big, "\nnext\n") end)
          e = error_of(s.read_line, s)
          assert.equal("ENOBUFS", e.code)
          local got = s:read_exactly(65536)
          assert.equal(string.rep("L", 65536), got)
          local n = 65536
          while true do
            local ok, line = pcall(s.read_line, s, { max = 1 << 24 })
            if ok then n = n + #line break end
          end
          assert.equal(#big, n)
        end)
        return s:read_line()
      end)
      assert.equal("next", r)
    end)

    it("close_write half-closes: the peer reads EOF and can still answer", function()
      local r = run(function()
        local c0, s0 = pair()
        local c <close> = c0
        local s <close> = s0
        c:write("question")
        c:close_write()
        c:close_write()
        local q = s:read_all()
        s:write("answer")
        s:close()
        return q .. ":" .. c:read_all()
      end)
      assert.equal("question:answer", r)
    end)
  end)

  describe("examples/http_get.lua", function()
    it("fetches a file from python3 -m http.server", function()
      local dir = os.tmpname()
      os.remove(dir)
      net.sh("mkdir -p " .. dir)
      local f = assert(io.open(dir .. "/hello.txt", "w"))
      f:write("hello over http\n")
      f:close()
      local log = dir .. "/server.log"
      local pid = net.spawn("cd " .. dir .. " && exec " .. net.PYTHON .. " -u -m http.server --bind 127.0.0.1 0", log)
      local port
      for _ = 1, 200 do
        local lf = io.open(log)
        local text = lf and lf:read("a") or ""
        if lf then lf:close() end
        port = text:match("port (%d+)")
        if port then break end
        net.sh("sleep 0.05")
      end
      local ok, out = pcall(function()
        assert(port, "http.server did not start")
        local p = io.popen(("cd '%s' && LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='%s/?.so;;' lua5.4 examples/http_get.lua http://127.0.0.1:%s/hello.txt 2>&1"):format(
          ROOT, os.getenv("TETHER_BUILD") or "build", port))
        local o = p:read("a")
        p:close()
        return o
      end)
      net.sh("kill " .. pid .. " 2>/dev/null")
      net.sh("rm -rf " .. dir)
      assert.is_true(ok, out)
      assert.matches("200", out)
      assert.matches("hello over http", out)
    end)
  end)
end)
