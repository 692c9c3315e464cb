-- Signals (§6.5): receivers, coalescing, cancellation, closing, SIGINT handing over from the
-- run's Ctrl-C handling and back, dispositions restored (nohup). Signals are sent by real
-- `kill` processes (NOTE: never os.execute: system() ignores SIGINT while it waits).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
local PC = dofile(SPEC_DIR .. "/fixtures/proccheck.lua")
PC.use(it)
local P = tether.process

local CHILD = PC.FIXTURES .. "/stdio_child.lua"

local function kill(sig, pid) P.run({ "kill", "-" .. sig, tostring(pid or PC.pid) }) end

local function err_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert(not ok, "expected an error")
  return e
end

describe("signal receivers", function()
  PC.it("rx:wait returns the name of the next signal", function()
    local got = tether.run(function()
      local rx <close> = tether.signal.open("SIGUSR1", "SIGHUP")
      kill("HUP")
      return rx:wait()
    end)
    assert.are.equal("SIGHUP", got)
  end)

  PC.it("accepts names without SIG and numbers; a signal named twice counts once", function()
    local got = tether.run(function()
      local rx <close> = tether.signal.open("USR2", 10, "SIGUSR2")
      kill("USR1")
      return rx:wait()
    end)
    assert.are.equal("SIGUSR1", got)
  end)

  PC.it("coalesces repeated signals nobody has received yet", function()
    local a, more = tether.run(function()
      local rx <close> = tether.signal.open("SIGUSR1")
      kill("USR1")
      kill("USR1")
      kill("USR1")
      tether.sleep(0.05)
      local a = rx:wait()
      return a, tether.move_on_after(0.2, rx.wait, rx)
    end)
    assert.are.equal("SIGUSR1", a)
    assert.is_false(more)
  end)

  PC.it("rx:iter() yields the signals", function()
    local seen = tether.run(function()
      local rx <close> = tether.signal.open("SIGUSR1", "SIGUSR2")
      local seen = {}
      tether.with_group(function(g)
        g:spawn(function()
          for sig in rx:iter() do
            seen[#seen + 1] = sig
            if #seen == 2 then break end
          end
        end)
        tether.sleep(0.05)
        kill("USR2")
        tether.sleep(0.05)
        kill("USR1")
      end)
      return seen
    end)
    assert.are.same({ "SIGUSR2", "SIGUSR1" }, seen)
  end)

  PC.it("a cancelled wait loses nothing that arrives later", function()
    local first, second = tether.run(function()
      local rx <close> = tether.signal.open("SIGUSR1")
      local first = tether.move_on_after(0.05, rx.wait, rx)
      kill("USR1")
      return first, rx:wait()
    end)
    assert.is_false(first)
    assert.are.equal("SIGUSR1", second)
  end)

  PC.it("wait is a checkpoint even with a signal pending", function()
    local e = tether.run(function()
      local rx <close> = tether.signal.open("SIGUSR1")
      kill("USR1")
      tether.sleep(0.05)
      local scope = tether.cancel_scope({})
      local err
      scope:run(function()
        scope:cancel()
        local ok
        ok, err = pcall(rx.wait, rx)
      end)
      return err
    end)
    assert.is_true(tether.Cancelled:is(e))
  end)

  PC.it("signals pending when the receiver closes are dropped", function()
    local got = tether.run(function()
      local rx = tether.signal.open("SIGUSR1")
      kill("USR1")
      tether.sleep(0.05)
      rx:close()
      local rx2 <close> = tether.signal.open("SIGUSR1")
      return tether.move_on_after(0.2, rx2.wait, rx2)
    end)
    assert.is_false(got)
  end)

  PC.it("a closed receiver raises ClosedResourceError, also in a task blocked on it", function()
    local e1, e2 = tether.run(function()
      local rx = tether.signal.open("SIGUSR1")
      local e1
      tether.with_group(function(g)
        g:spawn(function() e1 = err_of(rx.wait, rx) end)
        tether.sleep(0.05)
        rx:close()
        rx:close()
      end)
      return e1, err_of(rx.wait, rx)
    end)
    assert.is_true(tether.ClosedResourceError:is(e1))
    assert.is_true(tether.ClosedResourceError:is(e2))
  end)

  PC.it("a second waiter on one receiver is BusyResourceError", function()
    local e = tether.run(function()
      local rx <close> = tether.signal.open("SIGUSR1")
      local e
      tether.with_group(function(g)
        g:spawn(function() pcall(rx.wait, rx) end)
        tether.sleep(0.02)
        e = err_of(rx.wait, rx)
        g:cancel()
      end)
      return e
    end)
    assert.is_true(tether.BusyResourceError:is(e))
  end)

  PC.it("two receivers of one signal both receive it; one closing leaves the other", function()
    local a, b, c = tether.run(function()
      local rx1 = tether.signal.open("SIGUSR1")
      local rx2 <close> = tether.signal.open("SIGUSR1")
      kill("USR1")
      local a, b = rx1:wait(), rx2:wait()
      rx1:close()
      kill("USR1")
      return a, b, rx2:wait()
    end)
    assert.are.same({ "SIGUSR1", "SIGUSR1", "SIGUSR1" }, { a, b, c })
  end)

  PC.it("bad arguments", function()
    tether.run(function()
      assert.matches("SIGKILL cannot be caught", tostring(err_of(tether.signal.open, "SIGKILL")))
      assert.matches("SIGSTOP cannot be caught", tostring(err_of(tether.signal.open, "SIGSTOP")))
      assert.matches("unknown signal", tostring(err_of(tether.signal.open, "SIGNOPE")))
      assert.matches("signal name expected", tostring(err_of(tether.signal.open)))
      assert.matches("signal name expected", tostring(err_of(tether.signal.open, {})))
    end)
    assert.matches("outside tether.run", tostring(err_of(tether.signal.open, "SIGHUP")))
  end)

  PC.it("a SIGINT receiver replaces Ctrl-C while open; closed, Ctrl-C interrupts again", function()
    local out, code = tether.run(function()
      local p <close> = P.open({ PC.LUA, CHILD, "sigint_rx" }, { stdout = "pipe", stderr = "null", env = PC.lua_env() })
      local pid = p.stdout:read_line():match("ready (%d+)")
      kill("INT", pid)
      local got = p.stdout:read_line()
      local closed = p.stdout:read_line()
      kill("INT", pid)
      local code = p:wait()
      p.stdout:close()
      return got .. "," .. closed, code
    end)
    assert.are.equal("got SIGINT,closed", out)
    assert.are.equal(3, code)        -- the fixture exits 3: the run raised Interrupted
  end)

  PC.it("closing the last receiver restores the disposition before (ignored under nohup)", function()
    local r = tether.run(function()
      return P.run({ "sh", "-c", ("trap '' HUP; exec %s %s hup"):format(PC.LUA, CHILD) },
        { env = PC.lua_env(), check = false })
    end)
    assert.are.equal(0, r.exit_code, r.stderr)
    assert.matches("survived", r.stderr)
    r = tether.run(function()
      return P.run({ PC.LUA, CHILD, "hup" }, { env = PC.lua_env(), check = false })
    end)
    assert.are.equal("SIGHUP", r.signal, r.stderr)   -- default again: SIGHUP kills
  end)
end)
