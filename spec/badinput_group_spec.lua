-- Bad arguments to groups and task handles: clear errors, and a scheduler that keeps working (contract section 5).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local msg_of = support.msg_of

-- Asserts that msg names the function and the argument number, in Lua's usual form.
local function assert_bad_arg(msg, fname, argno)
  assert.matches("bad argument #" .. argno .. " to '[%w_.:]-" .. fname .. "'", msg)
end

describe("tether.with_group given bad arguments", function()
  it("rejects a body that is not a function, naming the argument", function()
    local msgs, body_ran = {}, false
    tether.run(function()
      msgs[1] = msg_of(function() tether.with_group(42) end)
      msgs[2] = msg_of(function() tether.with_group() end)
      msgs[3] = msg_of(function() tether.with_group({}, 42) end)
      msgs[4] = msg_of(function() tether.with_group({ name = "x" }) end)
      msgs[5] = msg_of(function() tether.with_group("fast", function() body_ran = true end) end)
    end)
    assert_bad_arg(msgs[1], "with_group", 1)
    assert_bad_arg(msgs[2], "with_group", 1)
    assert_bad_arg(msgs[3], "with_group", 2)
    assert_bad_arg(msgs[4], "with_group", 2)
    assert_bad_arg(msgs[5], "with_group", 1)
    assert.is_false(body_ran)
  end)

  it("rejects a limit that is not a positive integer, naming 'limit'", function()
    local msgs, body_ran = {}, false
    tether.run(function()
      for _, bad in ipairs({ 0, -1, 1.5, "3", 0 / 0, true, math.huge }) do
        msgs[#msgs + 1] = msg_of(function()
          tether.with_group({ limit = bad }, function() body_ran = true end)
        end)
      end
    end)
    for _, m in ipairs(msgs) do
      assert.matches("with_group", m, 1, true)
      assert.matches("limit", m, 1, true)
    end
    assert.is_false(body_ran)
  end)

  it("rejects an unknown policy, naming 'policy'", function()
    local msgs = {}
    tether.run(function()
      msgs[1] = msg_of(function() tether.with_group({ policy = "bogus" }, function() end) end)
      msgs[2] = msg_of(function() tether.with_group({ policy = 42 }, function() end) end)
    end)
    for _, m in ipairs(msgs) do
      assert.matches("with_group", m, 1, true)
      assert.matches("policy", m, 1, true)
    end
  end)

  it("rejects a name that is not a string, naming 'name'", function()
    local msg
    tether.run(function()
      msg = msg_of(function() tether.with_group({ name = {} }, function() end) end)
    end)
    assert.matches("with_group", msg, 1, true)
    assert.matches("name", msg, 1, true)
  end)

  it("points at the caller's line", function()
    local msg, line
    tether.run(function()
      msg = msg_of(function()
        line = debug.getinfo(1, "l").currentline; tether.with_group(42)
      end)
    end)
    assert.matches("badinput_group_spec.lua:" .. line .. ":", msg, 1, true)
  end)
end)

describe("g:spawn and g:start given bad arguments", function()
  it("g:spawn rejects a task that is not a function, naming the argument", function()
    local msgs = {}
    tether.run(function()
      tether.with_group(function(g)
        msgs[1] = msg_of(function() g:spawn(42) end)
        msgs[2] = msg_of(function() g:spawn() end)
        msgs[3] = msg_of(function() g:spawn({ name = "x" }, "nope") end)
        msgs[4] = msg_of(function() g:spawn({ name = "x" }) end)
      end)
    end)
    assert_bad_arg(msgs[1], "spawn", 1)
    assert_bad_arg(msgs[2], "spawn", 1)
    assert_bad_arg(msgs[3], "spawn", 2)
    assert_bad_arg(msgs[4], "spawn", 2)
  end)

  it("g:spawn rejects a name option that is not a string, naming 'name'", function()
    local msg, ran = nil, false
    tether.run(function()
      tether.with_group(function(g)
        msg = msg_of(function() g:spawn({ name = {} }, function() ran = true end) end)
      end)
    end)
    assert.matches("spawn", msg, 1, true)
    assert.matches("name", msg, 1, true)
    assert.is_false(ran)
  end)

  it("g:start rejects a task that is not a function, naming the argument", function()
    local msgs = {}
    tether.run(function()
      tether.with_group(function(g)
        msgs[1] = msg_of(function() g:start(nil) end)
        msgs[2] = msg_of(function() g:start({}, 42) end)
      end)
    end)
    assert_bad_arg(msgs[1], "start", 1)
    assert_bad_arg(msgs[2], "start", 2)
  end)

  it("points at the caller's line", function()
    local msg, line
    tether.run(function()
      tether.with_group(function(g)
        msg = msg_of(function()
          line = debug.getinfo(1, "l").currentline; g:spawn(42)
        end)
      end)
    end)
    assert.matches("badinput_group_spec.lua:" .. line .. ":", msg, 1, true)
  end)

  it("g:spawn in a full limited group rejects a bad argument at once instead of waiting", function()
    local msg
    tether.run(function()
      tether.with_group({ limit = 1 }, function(g)
        g:spawn(tether.sleep_forever)
        msg = msg_of(function() g:spawn(42) end)
        g:cancel()
      end)
    end)
    assert_bad_arg(msg, "spawn", 1)
  end)

  it("group methods reject a self that is not a group", function()
    local msgs = {}
    tether.run(function()
      tether.with_group(function(g)
        local fn = function() end
        msgs.spawn = msg_of(function() g.spawn(42, fn) end)
        msgs.spawn2 = msg_of(function() g.spawn({}, fn) end)
        msgs.start = msg_of(function() g.start("x", fn) end)
        msgs.cancel = msg_of(function() g.cancel(42) end)
      end)
    end)
    assert.matches("spawn", msgs.spawn, 1, true)
    assert.matches("spawn", msgs.spawn2, 1, true)
    assert.matches("start", msgs.start, 1, true)
    assert.matches("cancel", msgs.cancel, 1, true)
    for _, m in pairs(msgs) do assert.matches("bad", m, 1, true) end
  end)
end)

describe("task handle methods given a bad self", function()
  it("raise a clear error naming the method", function()
    local msgs = {}
    tether.run(function()
      local t = tether.with_group(function(g) return g:spawn(function() end) end)
      msgs.result = msg_of(function() t.result(42) end)
      msgs.wait = msg_of(function() t.wait({}) end)
      msgs.cancel = msg_of(function() t.cancel("x") end)
      msgs.done = msg_of(function() t.done(nil) end)
      msgs.error = msg_of(function() t.error(1) end)
      msgs.failed = msg_of(function() t.failed() end)
      msgs.cancelled = msg_of(function() t.cancelled(true) end)
    end)
    for m, msg in pairs(msgs) do
      assert.matches(m, msg, 1, true)
      assert.matches("bad", msg, 1, true)
    end
  end)
end)

describe("after bad arguments", function()
  it("the group and the scheduler keep working", function()
    local results, sibling
    local got = tether.run(function()
      return tether.with_group(function(g)
        sibling = g:spawn(function()
          tether.sleep(0.001)
          return "sibling ok"
        end)
        pcall(function() g:spawn(42) end)
        pcall(function() g:start() end)
        pcall(function() tether.with_group({ limit = -1 }, function() end) end)
        pcall(function() tether.with_group({ policy = "nope" }, function() end) end)
        pcall(function() sibling.wait(42) end)
        -- everything still works in the same task and group
        results = tether.with_group(function(g2)
          local ts = {}
          for i = 1, 5 do ts[i] = g2:spawn(function() tether.checkpoint(); return i end) end
          for _, t in ipairs(ts) do t:wait() end
          local out = {}
          for i, t in ipairs(ts) do out[i] = t:result() end
          return out
        end)
        local late = g:spawn(tether.sleep_forever)
        tether.checkpoint()
        late:cancel()
        return "body ok"
      end)
    end)
    assert.are.equal("body ok", got)
    assert.are.same({ 1, 2, 3, 4, 5 }, results)
    assert.are.equal("sibling ok", sibling:result())
  end)

  it("an uncaught bad argument in a task fails its group once, with that message", function()
    local ok, err = pcall(tether.run, function()
      tether.with_group(function(g)
        g:spawn(function() g:spawn(42) end)
      end)
    end)
    assert.is_false(ok)
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal(1, err.errors.n)
    assert_bad_arg(tostring(err.errors[1]), "spawn", 1)
    -- and the next run is healthy
    assert.are.equal("again", tether.run(function()
      tether.with_group(function(g) g:spawn(tether.sleep, 0.001) end)
      return "again"
    end))
  end)

  it("outside tether.run, they raise and leave the next run healthy", function()
    assert.has_error(function() tether.with_group(42) end)
    assert.has_error(function() tether.with_group({ limit = 0 }, function() end) end)
    assert.has_error(function() tether.run() end)
    assert.are.equal(3, tether.run(function()
      return tether.with_group({ limit = 2 }, function(g)
        local n = 0
        for _ = 1, 3 do g:spawn(function() tether.checkpoint(); n = n + 1 end) end
        return 3
      end)
    end))
  end)
end)
