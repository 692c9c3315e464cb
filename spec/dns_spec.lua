-- DNS: getaddrinfo, getnameinfo, failures, cancellation and abandoned lookups (contract §6.3).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path
local support = require("support")
local net = require("netsupport")

local error_of = support.error_of
local run = function(fn) return net.fd_checked(function() return tether.run(fn) end) end

describe("dns", function()
  it("resolves a name to addresses with their family", function()
    local name = net.localname()
    if not name then pending("no /etc/hosts entry for localhost: nothing to resolve offline") return end
    local r = run(function() return tether.dns.getaddrinfo(name) end)
    assert.is_true(#r >= 1)
    for _, a in ipairs(r) do
      assert.is_true(a.family == "inet" or a.family == "inet6")
      assert.is_true(a.addr == "127.0.0.1" or a.addr == "::1", a.addr)
      assert.is_nil(a.port)
    end
  end)

  it("gives the port for a service, and honours opts.family", function()
    local r = run(function() return tether.dns.getaddrinfo("127.0.0.1", 8080, { family = "inet" }) end)
    assert.same({ { addr = "127.0.0.1", family = "inet", port = 8080 } }, r)
  end)

  it("getnameinfo turns an address back into a name", function()
    local host, service = run(function() return tether.dns.getnameinfo("127.0.0.1", 80) end)
    assert.is_string(host)
    assert.equal("http", service)
  end)

  it("raises an IOError with the EAI_ code for a name that does not resolve", function()
    local e = run(function() return error_of(tether.dns.getaddrinfo, "no-such-host.invalid") end)
    assert.is_true(tether.IOError:is(e))
    assert.matches("^EAI_", e.code)
    assert.equal("getaddrinfo", e.op)
    assert.equal("no-such-host.invalid", e.host)
  end)

  it("is a checkpoint: raises Cancelled before starting in a cancelled scope", function()
    run(function()
      local scope = tether.cancel_scope({})
      scope:run(function()
        scope:cancel()
        assert.is_true(support.is_cancelled(error_of(tether.dns.getaddrinfo, "127.0.0.1")))
      end)
    end)
  end)

  it("a cancelled lookup raises Cancelled at once; run waits for abandoned ones", function()
    local n = run(function()
      local n = 0
      for i = 1, 20 do
        local ok = tether.move_on_after(0.0002 * (i % 3), tether.dns.getaddrinfo, net.localname() or "127.0.0.1")
        if not ok then n = n + 1 end
      end
      return n
    end)
    assert.is_true(n >= 1)
    assert.equal(0, tether.stats().handles)
  end)

  it("many lookups in parallel", function()
    local r = run(function()
      local res = tether.gather((function()
        local fns = {}
        for i = 1, 20 do fns[i] = function() return #tether.dns.getaddrinfo(net.localname() or "127.0.0.1") end end
        return fns
      end)())
      for _, x in ipairs(res) do assert.is_true(x.ok) end
      return #res
    end)
    assert.equal(20, r)
  end)

  it("rejects bad arguments at the call site", function()
    local m = tether.run(function()
      return {
        tostring(error_of(tether.dns.getaddrinfo, nil)),
        tostring(error_of(tether.dns.getaddrinfo, "a\0b")),
        tostring(error_of(tether.dns.getaddrinfo, "localhost", nil, { family = "ipx" })),
        tostring(error_of(tether.dns.getaddrinfo, "localhost", nil, { famly = "inet" })),
        tostring(error_of(tether.dns.getnameinfo, "localhost")),
        tostring(error_of(tether.dns.getnameinfo, "127.0.0.1", 99999)),
      }
    end)
    assert.matches("bad argument #1 to 'tether.dns.getaddrinfo' %(host: string expected", m[1])
    assert.matches("NUL", m[2])
    assert.matches("family", m[3])
    assert.matches("unknown option 'famly'", m[4])
    assert.matches("numeric", m[5])
    assert.matches("port out of range", m[6])
  end)
end)
