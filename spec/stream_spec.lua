-- spec/stream_spec.lua: the stream interface (contract §6.1) over tether.stream_pair
local tether = require("tether")

local function run(fn) return tether.run(fn) end

local function pair_do(fn)
  return run(function()
    local a, b = tether.stream_pair()
    local _ <close> = a
    local _ <close> = b
    return fn(a, b)
  end)
end

describe("streams", function()
  it("read returns what is there, at most max bytes, and nil at EOF again and again", function()
    local r = pair_do(function(a, b)
      a:write("hello world")
      local x = b:read(5)
      local y = b:read()
      a:close()
      return { x, y, b:read(), b:read() }
    end)
    assert.same({ "hello", " world" }, { r[1], r[2] })
    assert.is_nil(r[3]); assert.is_nil(r[4])
  end)

  it("write takes several strings and numbers and returns the stream", function()
    local r = pair_do(function(a, b)
      assert.equal(a, a:write("x", 1, "y", 2.5))
      a:close_write()
      return b:read_all()
    end)
    assert.equal("x1y2.5", r)
  end)

  it("read_line strips \\n and \\r\\n, keeps them with keep, returns a last line without newline", function()
    local r = pair_do(function(a, b)
      a:write("one\r\ntwo\nthree\nfour")
      a:close_write()
      return { b:read_line(), b:read_line(), b:read_line({ keep = true }), b:read_line(), b:read_line() }
    end)
    assert.same({ "one", "two", "three\n", "four" }, r)
  end)

  it("lines iterates until EOF", function()
    local got = pair_do(function(a, b)
      tether.with_group(function(g)
        g:spawn(function()
          for i = 1, 50 do a:write("line ", i, "\n") end
          a:close_write()
        end)
      end)
      local t = {}
      for l in b:lines() do t[#t + 1] = l end
      return t
    end)
    assert.equal(50, #got)
    assert.equal("line 50", got[50])
  end)

  it("read_until includes the separator; EOF first raises IncompleteReadError with partial", function()
    local r = pair_do(function(a, b)
      a:write("key=value;;rest")
      a:close_write()
      local x = b:read_until(";;")
      local ok, e = pcall(b.read_until, b, ";;")
      return { x, ok, tether.IncompleteReadError:is(e), e.code, e.partial }
    end)
    assert.same({ "key=value;;", false, true, "EOF", "rest" }, r)
  end)

  it("read_exactly returns n bytes across chunks, IncompleteReadError at EOF", function()
    local r = pair_do(function(a, b)
      tether.with_group(function(g)
        g:spawn(function()
          for _ = 1, 10 do a:write("abc"); tether.sleep(0) end
          a:close_write()
        end)
      end)
      local x = b:read_exactly(25)
      local ok, e = pcall(b.read_exactly, b, 10)
      return { x, ok, e.partial, tether.IOError:is(e) }
    end)
    assert.equal(("abc"):rep(10):sub(1, 25), r[1])
    assert.is_false(r[2])
    assert.equal("bcabc", r[3])
    assert.is_true(r[4])
  end)

  it("a line longer than max raises ENOBUFS, and the data stays for the next read", function()
    local r = pair_do(function(a, b)
      local big = ("x"):rep(10 * 1024 * 1024)
      local res = {}
      tether.with_group(function(g)
        g:spawn(function() a:write(big, "\nnext\n"); a:close_write() end)
        local ok, e = pcall(b.read_line, b)
        res.ok, res.code = ok, e.code
        local got = {}
        local n = 0
        while n < #big do
          local d = b:read(math.min(1 << 20, #big - n))
          n = n + #d
          got[#got + 1] = d
        end
        res.same = table.concat(got) == big
        res.rest = { b:read_line(), b:read_line(), b:read_line() }
      end)
      return res
    end)
    assert.is_false(r.ok)
    assert.equal("ENOBUFS", r.code)
    assert.is_true(r.same)
    assert.same({ "", "next" }, r.rest)
  end)

  it("read_all with max raises ENOBUFS past it", function()
    local r = pair_do(function(a, b)
      a:write(("z"):rep(100))
      a:close_write()
      local ok, e = pcall(b.read_all, b, { max = 10 })
      return { ok, e.code, #b:read_all() }
    end)
    assert.same({ false, "ENOBUFS", 100 }, r)
  end)

  it("NUL bytes pass through unchanged", function()
    local r = pair_do(function(a, b)
      a:write("a\0b\0\n\0")
      a:close_write()
      return { b:read_line(), b:read_all() }
    end)
    assert.same({ "a\0b\0", "\0" }, r)
  end)

  it("a cancelled read consumes nothing", function()
    local r = pair_do(function(a, b)
      local ok = tether.move_on_after(0.02, function() return b:read_exactly(4) end)
      a:write("ab")
      local ok2 = tether.move_on_after(0.02, function() return b:read_exactly(4) end)
      a:write("cd")
      return { ok, ok2, b:read_exactly(4) }
    end)
    assert.same({ false, false, "abcd" }, r)
  end)

  it("a read cancelled in the tick its data arrived keeps the data", function()
    local r = pair_do(function(a, b)
      local got
      tether.with_group(function(g)
        local t = g:spawn(function()
          local ok, v = pcall(b.read, b)
          got = ok and v or "cancelled"
        end)
        tether.sleep(0.01)
        a:write("payload")
        tether.sleep(0.01)  -- the data arrives and the reader is woken...
        t:cancel()          -- ...and is cancelled before it runs
      end)
      local rest = got ~= "payload" and b:read() or nil
      return { got, rest }
    end)
    -- nothing is lost: either the reader got it, or it is still there
    assert.is_true(r[1] == "payload" or r[2] == "payload")
  end)

  it("a read in a cancelled scope raises Cancelled even when data is there, and takes nothing", function()
    local r = pair_do(function(a, b)
      a:write("data")
      local sc = tether.cancel_scope({})
      local ok, e
      sc:run(function()
        sc:cancel()
        ok, e = pcall(b.read, b)
      end)
      return { ok, tether.Cancelled:is(e), b:read() }
    end)
    assert.same({ false, true, "data" }, r)
  end)

  it("a cancelled write closes the stream; later use raises ClosedResourceError", function()
    local r = pair_do(function(a, b)
      local ok = tether.move_on_after(0.05, function() a:write(("y"):rep(8 * 1024 * 1024)) end)
      local ok2, e = pcall(a.write, a, "more")
      return { ok, ok2, tether.ClosedResourceError:is(e), e.code }
    end)
    assert.same({ false, false, true, "EBADF" }, r)
  end)

  it("a write in an already cancelled scope leaves the stream open", function()
    local r = pair_do(function(a, b)
      local sc = tether.cancel_scope({})
      local ok, e
      sc:run(function() sc:cancel(); ok, e = pcall(a.write, a, "x") end)
      a:write("after\n")
      return { ok, tether.Cancelled:is(e), b:read_line() }
    end)
    assert.same({ false, true, "after" }, r)
  end)

  it("a slow reader blocks the writer and the buffer stays bounded", function()
    local r = pair_do(function(a, b)
      local wrote = 0
      local mem0 = collectgarbage("count")
      tether.with_group(function(g)
        g:spawn(function()
          for _ = 1, 64 do a:write(("w"):rep(65536)); wrote = wrote + 65536 end
          a:close_write()
        end)
        tether.sleep(0.05)
        local stalled = wrote
        assert(stalled < 64 * 65536, "the writer never blocked")
        local n = 0
        while true do
          local d = b:read()
          if not d then break end
          n = n + #d
        end
        wrote = { stalled = stalled, total = n }
      end)
      return { wrote.total, wrote.stalled, collectgarbage("count") - mem0 }
    end)
    assert.equal(64 * 65536, r[1])
    assert.is_true(r[2] < 64 * 65536)
  end)

  it("writing after the peer closed raises BrokenResourceError, not SIGPIPE", function()
    local r = run(function()
      local a, b = tether.stream_pair()
      local _ <close> = a
      b:close()
      local ok, e = pcall(function()
        for _ = 1, 50 do a:write(("q"):rep(65536)) end
      end)
      return { ok, tether.BrokenResourceError:is(e), e.code }
    end)
    assert.is_false(r[1])
    assert.is_true(r[2])
    assert.is_truthy(r[3] == "EPIPE" or r[3] == "ECONNRESET")
  end)

  it("two concurrent readers: the second raises BusyResourceError", function()
    local r = pair_do(function(a, b)
      local first, ok, e
      tether.with_group(function(g)
        g:spawn(function() first = b:read() end)
        tether.sleep(0.01)
        ok, e = pcall(b.read, b)
        a:write("x")
      end)
      return { first, ok, tether.BusyResourceError:is(e), e.code }
    end)
    assert.same({ "x", false, true, "EBUSY" }, r)
  end)

  it("closing a stream wakes a task blocked on it with ClosedResourceError", function()
    local r = pair_do(function(a, b)
      local ok, e
      tether.with_group(function(g)
        g:spawn(function() ok, e = pcall(b.read, b) end)
        tether.sleep(0.01)
        b:close()
      end)
      return { ok, tether.ClosedResourceError:is(e) }
    end)
    assert.same({ false, true }, r)
  end)

  it("close is idempotent and close_write makes later writes raise ClosedResourceError", function()
    local r = pair_do(function(a, b)
      a:close_write(); a:close_write()
      local ok, e = pcall(a.write, a, "x")
      local eof = b:read()
      a:close(); a:close()
      return { ok, tether.ClosedResourceError:is(e), eof }
    end)
    assert.same({ false, true }, { r[1], r[2] })
    assert.is_nil(r[3])
  end)

  it("objects left open are closed when the run ends", function()
    local a, b
    run(function() a, b = tether.stream_pair() end)
    assert.equal(0, tether.stats().io)
    local ok, e = pcall(a.read, a)
    assert.is_false(ok)
    assert.is_true(tether.ClosedResourceError:is(e))
  end)

  it("misuse raises naming the method and argument", function()
    pair_do(function(a, b)
      assert.matches("s:read", tostring(select(2, pcall(b.read, b, 0))))
      assert.matches("s:read_exactly", tostring(select(2, pcall(b.read_exactly, b, "x"))))
      assert.matches("unknown option 'maxx'", tostring(select(2, pcall(b.read_line, b, { maxx = 1 }))))
      assert.matches("s:write", tostring(select(2, pcall(a.write, a, {}))))
      assert.matches("s:read_until", tostring(select(2, pcall(b.read_until, b, ""))))
    end)
  end)

  it("dump says what a blocked reader waits on and lists open objects", function()
    local text = pair_do(function(a, b)
      local d
      tether.with_group(function(g)
        g:spawn(function() b:read() end)
        tether.sleep(0.01)
        d = tether.dump()
        a:write("x")
      end)
      return d
    end)
    assert.matches("read on socketpair", text)
    assert.matches("open I/O objects: 2", text)
  end)
end)
