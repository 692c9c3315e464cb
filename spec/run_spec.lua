-- Loading tether and running programs with tether.run (contract section 0).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local error_of = support.error_of

describe("require('tether')", function()
  it("gives the public API", function()
    for _, name in ipairs({ "run", "with_group", "sleep", "checkpoint", "dump" }) do
      assert.is_function(tether[name], name)
    end
    assert.is_not_nil(tether.Cancelled)
    assert.is_not_nil(tether.ErrorGroup)
    assert.is_not_nil(tether.Error)
  end)
end)

describe("tether.run", function()
  it("returns main's results, holes included", function()
    local n, a, b, c = (function(...) return select("#", ...), ... end)(
      tether.run(function() return 1, nil, "three" end))
    assert.are.equal(3, n)
    assert.are.equal(1, a)
    assert.is_nil(b)
    assert.are.equal("three", c)
  end)

  it("returns nothing when main returns nothing", function()
    assert.are.equal(0, select("#", tether.run(function() end)))
  end)

  it("passes its extra arguments to main", function()
    local n, x, y, z = tether.run(function(...) return select("#", ...), ... end, "a", nil, 3)
    assert.are.equal(3, n)
    assert.are.equal("a", x)
    assert.is_nil(y)
    assert.are.equal(3, z)
  end)

  it("returns main's results after main has blocked", function()
    assert.are.equal("woke", tether.run(function()
      tether.sleep(0.01)
      tether.checkpoint()
      return "woke"
    end))
  end)

  it("raises main's error value unchanged (same table)", function()
    local e = { code = 42 }
    assert.are.equal(e, error_of(tether.run, function() error(e) end))
  end)

  it("raises main's error value unchanged after main has blocked", function()
    local e = setmetatable({}, { __tostring = function() return "custom" end })
    assert.are.equal(e, error_of(tether.run, function()
      tether.sleep(0.01)
      error(e)
    end))
  end)

  it("raises string, number, false and nil errors unchanged", function()
    assert.are.equal("plain", error_of(tether.run, function() error("plain", 0) end))
    assert.are.equal(7, error_of(tether.run, function() error(7) end))
    assert.are.equal(false, error_of(tether.run, function() error(false) end))
    local ok, err = pcall(tether.run, function() error(nil) end)
    assert.is_false(ok)
    assert.is_nil(err)
  end)

  it("raises a failing task's error from main as an ErrorGroup holding it", function()
    local e = { "from the child" }
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn(function() error(e) end)
      end)
    end)
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal(1, err.errors.n)
    assert.are.equal(e, err.errors[1])
  end)

  it("can be called many times in a row, also after a failed run", function()
    for i = 1, 30 do
      if i % 3 == 0 then
        local e = {}
        assert.are.equal(e, error_of(tether.run, function()
          tether.with_group(function(g)
            g:spawn(tether.sleep, 0.001)
          end)
          error(e)
        end))
      else
        assert.are.equal(i * 2, tether.run(function(x)
          return tether.with_group(function(g)
            local t = g:spawn(function() tether.sleep(0.001); return x end)
            t:wait()
            return t:result() * 2
          end)
        end, i))
      end
    end
  end)

  it("leaves nothing alive on the loop once it returned", function()
    tether.run(function()
      tether.with_group(function(g)
        for _ = 1, 5 do g:spawn(tether.sleep, 0.001) end
        g:spawn({ daemon = true }, tether.sleep_forever)
      end)
    end)
    local s = tether.stats()
    assert.are.same({ tasks = 0, handles = 0, timers = 0, running = false }, {
      tasks = s.tasks, handles = s.handles, timers = s.timers, running = s.running })
  end)

  it("cannot be called from inside a running task", function()
    local inner_ran = false
    local got = tether.run(function()
      local ok, err = pcall(tether.run, function() inner_ran = true end)
      -- the outer run keeps working afterwards
      tether.sleep(0.001)
      return ok, err
    end)
    assert.is_false(got)
    assert.is_false(inner_ran)
  end)

  it("says 'already running' when called from inside a task", function()
    local _, err = tether.run(function()
      return pcall(tether.run, function() end)
    end)
    assert.matches("already running", tostring(err), 1, true)
    assert.matches("tether.run", tostring(err), 1, true)
  end)

  it("rejects a main that is not a function", function()
    local err = error_of(tether.run, 42)
    assert.matches("bad argument #1", tostring(err), 1, true)
    assert.matches("run", tostring(err), 1, true)
    assert.are.equal("ok", tether.run(function() return "ok" end))
  end)
end)

describe("a blocking operation outside tether.run", function()
  it("raises a clear error naming tether.sleep", function()
    local err = tostring(error_of(tether.sleep, 0.01))
    assert.matches("tether.sleep", err, 1, true)
    assert.matches("outside tether.run", err, 1, true)
  end)

  it("raises a clear error naming tether.checkpoint", function()
    local err = tostring(error_of(tether.checkpoint))
    assert.matches("checkpoint", err, 1, true)
    assert.matches("outside tether.run", err, 1, true)
  end)

  it("raises a clear error naming tether.with_group", function()
    local body_ran = false
    local err = tostring(error_of(tether.with_group, function() body_ran = true end))
    assert.matches("with_group", err, 1, true)
    assert.matches("outside tether.run", err, 1, true)
    assert.is_false(body_ran)
  end)

  it("raises a clear error naming t:wait", function()
    local t = tether.run(function()
      return tether.with_group(function(g) return g:spawn(function() end) end)
    end)
    local err = tostring(error_of(t.wait, t))
    assert.matches("wait", err, 1, true)
    assert.matches("outside tether.run", err, 1, true)
  end)

  it("leaves the scheduler working for the next tether.run", function()
    pcall(tether.sleep, 0.01)
    pcall(tether.checkpoint)
    pcall(tether.with_group, function() end)
    assert.are.same({ 1, 2, 3 }, tether.run(function()
      local out = {}
      tether.with_group(function(g)
        for i = 1, 3 do g:spawn(function() tether.sleep(0.001); out[#out + 1] = i end) end
      end)
      table.sort(out)
      return out
    end))
  end)
end)

describe("a blocking operation from a user's own coroutine inside a task", function()
  it("raises a clear error naming the operation, and the task carries on", function()
    local msgs = {}
    local got = tether.run(function()
      for _, op in ipairs({
        { "tether.sleep", function() tether.sleep(0.01) end },
        { "checkpoint", function() tether.checkpoint() end },
        { "with_group", function() tether.with_group(function() end) end },
      }) do
        local ok, err = pcall(coroutine.wrap(op[2]))
        assert.is_false(ok)
        msgs[op[1]] = tostring(err)
      end
      -- the task and the scheduler still work
      tether.sleep(0.001)
      return tether.with_group(function(g)
        local t = g:spawn(function() tether.checkpoint(); return "fine" end)
        t:wait()
        return t:result()
      end)
    end)
    assert.are.equal("fine", got)
    for op, msg in pairs(msgs) do
      assert.matches(op, msg, 1, true)
      assert.matches("coroutine that tether does not manage", msg, 1, true)
    end
  end)

  it("still works as an ordinary generator (its yields go to its resumer)", function()
    local got = tether.run(function()
      local gen = coroutine.wrap(function()
        assert(tether.now() >= 0)
        for i = 1, 3 do coroutine.yield(i * 10) end
      end)
      return gen() + gen() + gen()
    end)
    assert.are.equal(60, got)
  end)
end)

describe("a plain coroutine.yield() inside a task", function()
  it("returns nothing, whatever was yielded", function()
    local counts = tether.run(function()
      local a = select("#", coroutine.yield())
      local b = select("#", coroutine.yield(1, 2, 3))
      return { a, b }
    end)
    assert.are.same({ 0, 0 }, counts)
  end)

  it("lets other ready tasks run, like a checkpoint", function()
    local log = {}
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function() log[#log + 1] = "child" end)
        log[#log + 1] = "before yield"
        coroutine.yield()
        log[#log + 1] = "after yield"
      end)
    end)
    assert.are.same({ "before yield", "child", "after yield" }, log)
  end)

  it("interleaves tasks that only use plain yields", function()
    local log = {}
    tether.run(function()
      tether.with_group(function(g)
        for _, name in ipairs({ "a", "b" }) do
          g:spawn(function()
            for i = 1, 3 do
              log[#log + 1] = name .. i
              coroutine.yield()
            end
          end)
        end
      end)
    end)
    assert.are.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, log)
  end)

  it("does not raise Cancelled inside a cancelled group; the next checkpoint does", function()
    local yield_ok, cp_err
    tether.run(function()
      tether.with_group(function(g)
        g:cancel("stop")
        yield_ok = pcall(coroutine.yield)
        local _
        _, cp_err = pcall(tether.checkpoint)
        error(cp_err, 0)
      end)
    end)
    assert.is_true(yield_ok)
    assert.is_true(tether.Cancelled:is(cp_err))
  end)

  it("works in the root task and inside blocked-on tasks alike", function()
    assert.are.equal("done", tether.run(function()
      coroutine.yield()
      tether.with_group(function(g)
        local t = g:spawn(function() coroutine.yield("ignored"); return 1 end)
        t:wait()
      end)
      coroutine.yield()
      return "done"
    end))
  end)
end)
