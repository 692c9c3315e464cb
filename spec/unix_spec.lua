-- Local (Unix domain) sockets: connect, listen, serve, socket files and their permissions (contract §6.2).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path
local support = require("support")
local net = require("netsupport")

local is_cancelled = support.is_cancelled
local error_of = support.error_of
local run = function(fn) return net.fd_checked(function() return tether.run(fn) end) end

local function tmppath()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".sock"
end

local function exists(p)
  return net.sh("test -S '" .. p .. "'")
end

describe("unix sockets", function()
  it("connects, accepts and carries bytes; closing the listener removes its file", function()
    local path = tmppath()
    local r, existed = run(function()
      local l = tether.unix.listen(path)
      assert.equal(path, l.path)
      local c <close> = tether.unix.connect(path)
      local s <close> = l:accept()
      c:write("over a local socket")
      local got = s:read()
      assert.equal(path, c:getpeername())
      local existed = exists(path)
      l:close()
      return got, existed
    end)
    assert.equal("over a local socket", r)
    assert.is_true(existed)
    assert.is_false(exists(path))
  end)

  it("sets the socket file's permissions with opts.mode", function()
    local path = tmppath()
    local mode = run(function()
      local l <close> = tether.unix.listen(path, { mode = "0600" })
      return (net.read("stat -c %a '" .. path .. "'"):gsub("%s+$", ""))
    end)
    assert.equal("600", mode)
    assert.is_false(exists(path))
  end)

  it("a path of 108 bytes or more raises ENAMETOOLONG", function()
    local e1, e2 = run(function()
      local long = "/tmp/" .. string.rep("x", 103)
      return error_of(tether.unix.listen, long), error_of(tether.unix.connect, long)
    end)
    assert.equal("ENAMETOOLONG", e1.code)
    assert.equal("ENAMETOOLONG", e2.code)
    assert.equal("connect", e2.op)
  end)

  it("connecting to a missing path raises ENOENT with the path", function()
    local e = run(function() return error_of(tether.unix.connect, "/nonexistent/x.sock") end)
    assert.equal("ENOENT", e.code)
    assert.equal("/nonexistent/x.sock", e.path)
    assert.matches("^IOError: ENOENT: .*%(connect '/nonexistent/x.sock'%)$", tostring(e))
  end)

  it("a path in use raises EADDRINUSE and the other's file stays", function()
    local path = tmppath()
    local e = run(function()
      local l <close> = tether.unix.listen(path)
      local e = error_of(tether.unix.listen, path)
      assert.is_true(exists(path))
      return e
    end)
    assert.equal("EADDRINUSE", e.code)
  end)

  it("serve runs a handler per connection (g:start returns the listener)", function()
    local path = tmppath()
    local r = run(function()
      return tether.with_group(function(g)
        local l = g:start(tether.unix.serve, function(s) s:write(s:read_line(), "!\n") end, path, { limit = 4 })
        assert.equal(path, l.path)
        local c <close> = tether.unix.connect(path)
        c:write("hi\n")
        local got = c:read_line()
        g:cancel()
        return got
      end)
    end)
    assert.equal("hi!", r)
    assert.is_false(exists(path))
  end)

  it("accept cancelled while blocked raises Cancelled and loses no connection", function()
    local path = tmppath()
    local r = run(function()
      local l <close> = tether.unix.listen(path)
      assert.is_false(tether.move_on_after(0.02, l.accept, l))
      local c <close> = tether.unix.connect(path)
      local s <close> = l:accept()
      s:write("z")
      return c:read()
    end)
    assert.equal("z", r)
  end)

  it("connect cancelled before it starts opens nothing", function()
    local path = tmppath()
    run(function()
      local l <close> = tether.unix.listen(path)
      local scope = tether.cancel_scope({})
      scope:run(function()
        scope:cancel()
        local ok, e = pcall(tether.unix.connect, path)
        assert.is_false(ok)
        assert.is_true(is_cancelled(e))
      end)
    end)
  end)

  it("rejects bad arguments", function()
    local m = tether.run(function()
      return {
        tostring(error_of(tether.unix.connect, 42 == 42 and {} or nil)),
        tostring(error_of(tether.unix.listen, "/tmp/a\0b")),
        tostring(error_of(tether.unix.listen, tmppath(), { mode = "rw" })),
        tostring(error_of(tether.unix.listen, tmppath(), { host = "x" })),
      }
    end)
    assert.matches("bad argument #1 to 'tether.unix.connect' %(path: string expected", m[1])
    assert.matches("NUL", m[2])
    assert.matches("mode", m[3])
    assert.matches("unknown option 'host'", m[4])
  end)
end)
