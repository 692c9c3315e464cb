-- Standard streams (§6.6): tether.stdin/stdout/stderr, tested through child lua5.4 scripts
-- whose stdio is a pipe, a socket, a regular file and /dev/null. Descriptor flags are
-- checked after the child's runs, in the child and in the process that shares them.
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
local PC = dofile(SPEC_DIR .. "/fixtures/proccheck.lua")
PC.use(it)
local P = tether.process

local CHILD = PC.FIXTURES .. "/stdio_child.lua"
local O_NONBLOCK = 2048   -- 04000 on Linux

local function nonblocking(octal) return (tonumber(octal, 8) & O_NONBLOCK) ~= 0 end

-- The "flags N=..." lines the child reports.
local function child_flags(stderr)
  local t = {}
  for fd, f in stderr:gmatch("flags (%d)=(%d+)") do t[tonumber(fd)] = f end
  return t
end

local function child(mode, opts, extra)
  opts = opts or {}
  opts.env = PC.lua_env()
  opts.check = false
  local argv = { PC.LUA, CHILD, mode }
  if extra then argv[#argv + 1] = extra end
  return P.run(argv, opts)
end

local function assert_blocking(r)
  local fl = child_flags(r.stderr)
  for fd = 0, 2 do
    if fl[fd] then assert.is_false(nonblocking(fl[fd]), ("descriptor %d left non-blocking (%s)"):format(fd, fl[fd])) end
  end
end

describe("standard streams", function()
  local dir
  setup(function() dir = PC.tmpdir() end)
  teardown(function() PC.cleanup() end)

  PC.it("pipes: lines in, lines out, flags left blocking", function()
    local r = tether.run(function() return child("echo", { stdin = "one\ntwo\n" }) end)
    assert.are.equal(0, r.exit_code, r.stderr)
    assert.are.equal("ONE\nTWO\ndone\n", r.stdout)
    assert_blocking(r)
  end)

  PC.it("a regular file as stdin and stdout", function()
    local inf, outf = dir .. "/in.txt", dir .. "/out.txt"
    PC.write(inf, "alpha\nbeta")
    local r = tether.run(function()
      return P.run({ "sh", "-c", ('exec %s %s echo < "%s" > "%s"'):format(PC.LUA, CHILD, inf, outf) },
        { env = PC.lua_env(), check = false })
    end)
    assert.are.equal(0, r.exit_code, r.stderr)
    assert.are.equal("ALPHA\nBETA\ndone\n", PC.read(outf))
    assert_blocking(r)
  end)

  PC.it("a regular file opened for appending keeps every write in order", function()
    local outf = dir .. "/append.txt"
    PC.write(outf, "existing\n")
    local r = tether.run(function()
      return P.run({ "sh", "-c", ('exec %s %s spawn >> "%s"'):format(PC.LUA, CHILD, outf) },
        { env = PC.lua_env(), check = false })
    end)
    assert.are.equal(0, r.exit_code, r.stderr)
    assert.are.equal("existing\nbefore\nchild\nafter\nprint after the run\n", PC.read(outf))
  end)

  PC.it("/dev/null as stdin and stdout", function()
    local r = tether.run(function()
      return P.run({ "sh", "-c", ("exec %s %s echo < /dev/null > /dev/null"):format(PC.LUA, CHILD) },
        { env = PC.lua_env(), check = false })
    end)
    assert.are.equal(0, r.exit_code, r.stderr)
    assert_blocking(r)
  end)

  PC.it("5 MB through a pipe: every byte written before the run returns", function()
    local n = 5 * 1024 * 1024
    local r = tether.run(function() return child("big", nil, tostring(n)) end)
    assert.are.equal(0, r.exit_code, r.stderr)
    assert.are.equal(n, #r.stdout)
    assert.are.equal(string.rep("0123456789abcdef", 4096), r.stdout:sub(1, 65536))
    assert_blocking(r)
  end)

  PC.it("a child that inherits stdout: order kept, flags blocking after", function()
    local r = tether.run(function() return child("spawn") end)
    assert.are.equal(0, r.exit_code, r.stderr)
    assert.are.equal("before\nchild\nafter\nprint after the run\n", r.stdout)
    assert_blocking(r)
  end)

  PC.it("the descriptor the parent shares stays blocking (pipe)", function()
    -- sh shares its stdout (the capture pipe) with the child: its flags are read after.
    local r = tether.run(function()
      return P.run({ "sh", "-c", ("%s %s big 100000 >/dev/null; %s %s spawn; grep flags /proc/$$/fdinfo/1")
        :format(PC.LUA, CHILD, PC.LUA, CHILD) }, { env = PC.lua_env(), check = false })
    end)
    local fl = r.stdout:match("flags:%s*(%d+)")
    assert.is_not_nil(fl, r.stdout .. r.stderr)
    assert.is_false(nonblocking(fl))
  end)

  for _, how in ipairs({ "spawn", "error" }) do
    PC.it("a socket as stdout (a dup): flags restored after the run (" .. how .. ")", function()
      local out, fl = tether.run(function()
        local p <close> = P.open({ "sh", "-c", ("%s %s %s; grep flags /proc/$$/fdinfo/1"):format(PC.LUA, CHILD, how) },
          { stdout = "pipe", stderr = "null", env = PC.lua_env() })
        local out = p.stdout:read_all()
        p:wait()
        p.stdout:close()
        return out, out:match("flags:%s*(%d+)")
      end)
      assert.is_not_nil(fl, out)
      assert.is_false(nonblocking(fl), "socket left non-blocking: " .. fl)
      if how == "error" then assert.matches("^partial\n", out) end
    end)
  end

  PC.it("flags restored after Ctrl-C (socket stdout)", function()
    local out, fl, code = tether.run(function()
      local p <close> = P.open({ "sh", "-c", ("%s %s sigint; echo status $?; grep flags /proc/$$/fdinfo/1"):format(PC.LUA, CHILD) },
        { stdin = "pipe", stdout = "pipe", stderr = "null", env = PC.lua_env() })
      local ready = p.stdout:read_line()
      local pid = ready:match("ready (%d+)")
      P.run({ "kill", "-INT", pid })
      local out = p.stdout:read_all()
      p:wait()
      p.stdin:close()
      p.stdout:close()
      return out, out:match("flags:%s*(%d+)"), out:match("status (%d+)")
    end)
    assert.are.equal("3", code, out)   -- the fixture exits 3 when the run raised (Interrupted)
    assert.is_false(nonblocking(fl))
  end)

  PC.it("a cancelled write completes, then raises Cancelled; the stream stays usable", function()
    local out, err = tether.run(function()
      local p <close> = P.open({ PC.LUA, CHILD, "cancel_write" }, { stdout = "pipe", stderr = "pipe", env = PC.lua_env() })
      assert(p.stderr:read_line() == "start")
      tether.sleep(0.4)            -- the child's write waits for us, past its deadline
      local out, err
      tether.with_group(function(g)
        g:spawn(function() err = p.stderr:read_all() end)
        out = p.stdout:read_all()
      end)
      p:wait()
      p.stdout:close()
      p.stderr:close()
      return out, err
    end)
    assert.matches("cancelled=true timeout=true", err)
    local waited = tonumber(err:match("waited=([%d.]+)"))
    assert.is_true(waited >= 0.3, "the write did not wait for completion: " .. err)
    assert.are.equal((1 << 20) + #"after\n", #out)
    assert.matches("after\n$", out)
  end)

  PC.it("close ends tether's use only; the next use opens it again", function()
    local r = tether.run(function() return child("close") end)
    assert.are.equal(0, r.exit_code, r.stderr)
    assert.matches("closed=true", r.stderr)
    assert.are.equal("one\ntwo\nthree\nprint after the run\n", r.stdout)
  end)

  PC.it("works again in a second run", function()
    local r = tether.run(function() return child("tworuns") end)
    assert.are.equal("first\nsecond\n", r.stdout)
  end)

  PC.it("the test process's own stderr stays blocking after a child used it", function()
    local before = PC.read("/proc/self/fdinfo/2"):match("flags:%s*(%d+)")
    tether.run(function()
      P.run({ PC.LUA, "-e", "require('tether').run(function() require('tether').stderr:write('') end)" },
        { stderr = "inherit", env = PC.lua_env() })
    end)
    local after = PC.read("/proc/self/fdinfo/2"):match("flags:%s*(%d+)")
    assert.are.equal(before, after)
  end)

  PC.it("is a clear error outside tether.run", function()
    local ok, e = pcall(function() return tether.stdout end)
    assert.is_false(ok)
    assert.matches("tether.stdout: only inside tether.run", tostring(e))
  end)

  PC.it("is the same object within a run, listed while open", function()
    tether.run(function()
      local a, b = tether.stderr, tether.stderr
      assert.are.equal(a, b)
      assert.are.equal(1, tether.stats().io)
      a:close()
      assert.are_not.equal(a, tether.stderr)
    end)
  end)
end)
