-- UDP sockets: open, send_to, receive, options, cancellation (contract §6.2, §6.9).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path
local support = require("support")
local net = require("netsupport")

local is_cancelled = support.is_cancelled
local error_of = support.error_of
local run = function(fn) return net.fd_checked(function() return tether.run(fn) end) end

describe("udp", function()
  it("sends and receives datagrams with the sender's address", function()
    local r = run(function()
      local a <close> = tether.udp.open({ port = 0 })
      local b <close> = tether.udp.open()
      assert.is_nil(b.port)                       -- unbound until the first send
      b:send_to("ping\0pong", "127.0.0.1", a.port)
      local data, addr, port = a:receive()
      assert.equal(b.port, port)
      a:send_to("back", addr, port)
      return { data, addr, (b:receive()) }
    end)
    assert.same({ "ping\0pong", "127.0.0.1", "back" }, r)
  end)

  it("binds loopback with opts.port alone and a given host otherwise", function()
    local h1, h2 = run(function()
      local a <close> = tether.udp.open({ port = 0 })
      local b <close> = tether.udp.open({ host = "*" })
      return a.host, b.host
    end)
    assert.equal("127.0.0.1", h1)
    assert.is_true(h2 == "::" or h2 == "0.0.0.0", h2)
  end)

  it("keeps datagram boundaries, empty datagrams included", function()
    local r = run(function()
      local a <close> = tether.udp.open({ port = 0 })
      local b <close> = tether.udp.open({ port = 0 })
      b:send_to("one", "127.0.0.1", a.port)
      b:send_to("", "127.0.0.1", a.port)
      b:send_to(string.rep("x", 60000), "127.0.0.1", a.port)
      local out = {}
      for i = 1, 3 do out[i] = #a:receive() end
      return out
    end)
    assert.same({ 3, 0, 60000 }, r)
  end)

  it("receives cancelled at random moments lose no datagram: each reaches a receive that returned", function()
    local total = run(function()
      local a <close> = tether.udp.open({ port = 0 })
      local b <close> = tether.udp.open({ port = 0 })
      local n = 0
      for i = 1, 30 do
        local ok, d = tether.move_on_after(0.0005 * (i % 4), a.receive, a)
        if ok and d then n = n + 1 end
        b:send_to("d", "127.0.0.1", a.port)
      end
      while true do
        local ok, d = tether.move_on_after(0.3, a.receive, a)
        if not ok then break end
        n = n + 1
      end
      return n
    end)
    assert.equal(30, total)
  end)

  it("receive cancelled before it starts raises Cancelled and takes nothing", function()
    local d = run(function()
      local a <close> = tether.udp.open({ port = 0 })
      local b <close> = tether.udp.open({ port = 0 })
      b:send_to("kept", "127.0.0.1", a.port)
      tether.sleep(0.01)
      local scope = tether.cancel_scope({})
      scope:run(function()
        scope:cancel()
        local ok, e = pcall(a.receive, a)
        assert.is_false(ok)
        assert.is_true(is_cancelled(e))
      end)
      return a:receive()
    end)
    assert.equal("kept", d)
  end)

  it("send_to cancelled before it starts sends nothing and leaves the socket open", function()
    local r = run(function()
      local a <close> = tether.udp.open({ port = 0 })
      local b <close> = tether.udp.open({ port = 0 })
      local scope = tether.cancel_scope({})
      scope:run(function()
        scope:cancel()
        assert.is_false(pcall(b.send_to, b, "no", "127.0.0.1", a.port))
      end)
      b:send_to("yes", "127.0.0.1", a.port)
      return a:receive()
    end)
    assert.equal("yes", r)
  end)

  it("a socket closed by another task raises ClosedResourceError in the blocked receive", function()
    local e = run(function()
      local a = tether.udp.open({ port = 0 })
      local err
      tether.with_group(function(g)
        g:spawn(function() err = error_of(a.receive, a) end)
        tether.sleep(0.01)
        a:close()
      end)
      a:close()
      return err
    end)
    assert.is_true(tether.ClosedResourceError:is(e))
  end)

  it("two receivers: the second gets BusyResourceError", function()
    local e = run(function()
      local a <close> = tether.udp.open({ port = 0 })
      local err
      tether.with_group(function(g)
        g:spawn(function() pcall(a.receive, a) end)
        tether.sleep(0.01)
        err = error_of(a.receive, a)
        g:cancel()
      end)
      return err
    end)
    assert.is_true(tether.BusyResourceError:is(e))
  end)

  it("sets broadcast and multicast options", function()
    run(function()
      local a <close> = tether.udp.open({ port = 0 })
      a:set_broadcast(true)
      a:set_multicast_loop(true)
      a:set_multicast_ttl(2)
      local ok, e = pcall(a.join_group, a, "239.255.0.1", "127.0.0.1")
      if ok then a:leave_group("239.255.0.1", "127.0.0.1") else assert.is_true(tether.IOError:is(e)) end
    end)
  end)

  it("rejects names, bad ports and unknown options at the call site", function()
    local m = tether.run(function()
      local a <close> = tether.udp.open()
      return {
        tostring(error_of(a.send_to, a, "x", "localhost", 53)),
        tostring(error_of(a.send_to, a, "x", "127.0.0.1", 65536)),
        tostring(error_of(a.send_to, a, {}, "127.0.0.1", 53)),
        tostring(error_of(tether.udp.open, { prot = 1 })),
        tostring(error_of(tether.udp.open, { host = "example.com" })),
        tostring(error_of(a.set_multicast_ttl, a, 0)),
      }
    end)
    assert.matches("numeric address expected", m[1])
    assert.matches("port out of range", m[2])
    assert.matches("string expected", m[3])
    assert.matches("unknown option 'prot'", m[4])
    assert.matches("numeric address", m[5])
    assert.matches("1..255", m[6])
  end)

  it("closes sockets left open at the end of the run", function()
    local a
    run(function() a = tether.udp.open({ port = 0 }) end)
    assert.is_true(a.closed)
    assert.is_true(tether.ClosedResourceError:is(error_of(function()
      tether.run(function() a:receive() end)
    end)))
  end)
end)
