-- Bad arguments to the cancellation, timeout, error, catch and racing APIs: clear errors, scheduler unharmed (§2-§5).
local tether = require("tether")

local function f() end

local function raiser()
  local MyErr = tether.error_class("MyErr")
  return function() error(MyErr("boom")) end
end

-- Each case: a call made inside a task, the function name the error must mention, and the acceptable ways
-- of naming the argument (any one of them).
local CASES = {
  { "sleep with a string", function() tether.sleep("soon") end, "sleep", { "#1" } },
  { "sleep with no argument", function() tether.sleep() end, "sleep", { "#1" } },
  { "sleep with a negative duration", function() tether.sleep(-1) end, "sleep", { "#1" } },
  { "sleep with NaN", function() tether.sleep(0 / 0) end, "sleep", { "#1" } },
  { "sleep_until with a string", function() tether.sleep_until("later") end, "sleep_until", { "#1" } },
  { "sleep_until with NaN", function() tether.sleep_until(0 / 0) end, "sleep_until", { "#1" } },
  { "move_on_after with a string timeout", function() tether.move_on_after("1", f) end, "move_on_after", { "#1" } },
  { "move_on_after with a negative timeout", function() tether.move_on_after(-1, f) end, "move_on_after", { "#1" } },
  { "move_on_after with NaN", function() tether.move_on_after(0 / 0, f) end, "move_on_after", { "#1" } },
  { "move_on_after without a function", function() tether.move_on_after(1, 42) end, "move_on_after", { "#2" } },
  { "fail_after with a string timeout", function() tether.fail_after("1", f) end, "fail_after", { "#1" } },
  { "fail_after with a negative timeout", function() tether.fail_after(-0.5, f) end, "fail_after", { "#1" } },
  { "fail_after without a function", function() tether.fail_after(1) end, "fail_after", { "#2" } },
  { "cancel_scope with a number", function() tether.cancel_scope(5) end, "cancel_scope", { "#1" } },
  { "cancel_scope with a string timeout", function() tether.cancel_scope({ timeout = "5" }) end,
    "cancel_scope", { "timeout" } },
  { "cancel_scope with a negative timeout", function() tether.cancel_scope({ timeout = -1 }) end,
    "cancel_scope", { "timeout" } },
  { "cancel_scope with a string deadline", function() tether.cancel_scope({ deadline = "now" }) end,
    "cancel_scope", { "deadline" } },
  { "cancel_scope with a NaN deadline", function() tether.cancel_scope({ deadline = 0 / 0 }) end,
    "cancel_scope", { "deadline" } },
  { "scope:run without a function", function() tether.cancel_scope({}):run(42) end, "run", { "#1" } },
  { "setting a scope's deadline to a string", function()
      local scope = tether.cancel_scope({})
      scope:run(function() scope.deadline = "tomorrow" end)
    end, "deadline", { "deadline" } },
  { "shield without a function", function() tether.shield("fn") end, "shield", { "#1" } },
  { "error_class with a number name", function() tether.error_class(42) end, "error_class", { "#1" } },
  { "error_class with a non-class parent", function() tether.error_class("X", 42) end, "error_class", { "#2" } },
  { "error_class with a plain table parent", function() tether.error_class("X", {}) end, "error_class", { "#2" } },
  { "ErrorGroup with a number message", function() tether.ErrorGroup(42, { "x" }) end,
    "ErrorGroup", { "#1", "message" } },
  { "ErrorGroup with errors not a table", function() tether.ErrorGroup("m", "x") end,
    "ErrorGroup", { "#2", "errors" } },
  { "ErrorGroup with no errors", function() tether.ErrorGroup("m", {}) end,
    "ErrorGroup", { "#2", "errors", "empty" } },
  { "split with a number matcher", function() tether.ErrorGroup("m", { "x" }):split(42) end, "split", { "#1", "matcher" } },
  { "split with no matcher", function() tether.ErrorGroup("m", { "x" }):split() end, "split", { "#1", "matcher" } },
  { "subgroup with a boolean matcher", function() tether.ErrorGroup("m", { "x" }):subgroup(true) end,
    "subgroup", { "#1", "matcher" } },
  { "split with a list holding a number", function() tether.ErrorGroup("m", { "x" }):split({ "x", 42 }) end,
    "split", { "#1", "matcher" } },
  { "info with a string index", function() tether.ErrorGroup("m", { "x" }):info("one") end, "info", { "#1" } },
  { "catch without a function", function() tether.catch(42, {}) end, "catch", { "#1" } },
  { "catch with handlers not a table", function() tether.catch(f, "handlers") end, "catch", { "#2" } },
  { "catch with a handler entry that is not a pair", function() tether.catch(raiser(), { 42 }) end,
    "catch", { "#2", "handler" } },
  { "catch with a handler that is not a function", function()
      tether.catch(raiser(), { { tether.Error, "not a function" } })
    end, "catch", { "#2", "handler" } },
  { "catch with a bad matcher", function() tether.catch(raiser(), { { 42, f } }) end, "catch", { "#2", "matcher" } },
  { "catch with ErrorGroup as matcher", function() tether.catch(raiser(), { { tether.ErrorGroup, f } }) end,
    "catch", { "ErrorGroup" } },
  { "except with handlers not a table", function() tether.except("err", 42) end, "except", { "#2" } },
  { "gather with a number", function() tether.gather(42) end, "gather", { "#1" } },
  { "gather with a non-function element", function() tether.gather({ f, "g" }) end, "gather", { "#1" } },
  { "first with a string", function() tether.first("fns") end, "first", { "#1" } },
  { "first with a non-function element", function() tether.first({ 42 }) end, "first", { "#1" } },
}

local function check_message(msg, fname, arg_names)
  assert.is_string(msg, "the error is not a message: " .. tostring(msg))
  assert.is_truthy(msg:find(fname, 1, true), ("message does not name '%s': %s"):format(fname, msg))
  for _, a in ipairs(arg_names) do
    if msg:find(a, 1, true) then return end
  end
  error(("message names none of {%s}: %s"):format(table.concat(arg_names, ", "), msg))
end

describe("bad arguments", function()
  for _, case in ipairs(CASES) do
    local title, call, fname, arg_names = case[1], case[2], case[3], case[4]
    it(title .. " raises a clear error at the call site and leaves the scheduler working", function()
      local ok, err, after = tether.run(function()
        local ok, err = pcall(call)
        -- the task that made the bad call carries on normally
        tether.sleep(0.001)
        tether.checkpoint()
        return ok, err, "task carried on"
      end)
      assert.is_false(ok, "no error was raised")
      check_message(tostring(err), fname, arg_names)
      assert.equal("task carried on", after)
      -- and a following run works, with concurrency and timers
      local r = tether.run(function()
        local r = tether.gather({
          function() tether.sleep(0.005); return 1 end,
          function() return 2 end,
        })
        return r[1][1] + r[2][1]
      end)
      assert.equal(3, r)
    end)
  end

  it("does not kill the run when the bad call is left uncaught in a child task", function()
    local eg = tether.run(function()
      local ok, eg = pcall(tether.with_group, function(g)
        g:spawn({ name = "careless" }, function() tether.sleep("x") end)
      end)
      return eg
    end)
    assert.is_true(tether.ErrorGroup:is(eg))
    assert.equal(1, eg.errors.n)
    assert.matches("sleep", tostring(eg.errors[1]), 1, true)
    assert.equal("fine", tether.run(function() tether.sleep(0.001); return "fine" end))
  end)
end)

describe("misuse outside the scheduler", function()
  local OUTSIDE = {
    { "sleep", function() tether.sleep(0.01) end },
    { "checkpoint", function() tether.checkpoint() end },
    { "gather", function() tether.gather({ f }) end },
    { "first", function() tether.first({ f }) end },
  }
  for _, case in ipairs(OUTSIDE) do
    local name, call = case[1], case[2]
    it(name .. " outside tether.run raises a clear error naming it", function()
      local ok, err = pcall(call)
      assert.is_false(ok)
      local msg = tostring(err)
      assert.is_truthy(msg:find(name, 1, true), msg)
      assert.is_truthy(msg:find("outside", 1, true), msg)
      assert.equal("ok", tether.run(function() tether.sleep(0.001); return "ok" end))
    end)

    it(name .. " from a coroutine tether does not manage raises a clear error and the task carries on", function()
      local ok, err, after = tether.run(function()
        local co = coroutine.wrap(function() return pcall(call) end)
        local ok, err = co()
        tether.sleep(0.001)
        return ok, err, "carried on"
      end)
      assert.is_false(ok)
      local msg = tostring(err)
      assert.is_truthy(msg:find(name, 1, true), msg)
      assert.equal("carried on", after)
    end)
  end

  it("a cancel scope cannot be run outside tether.run", function()
    local ok, err = pcall(function() return tether.cancel_scope({}):run(function() tether.sleep(0.01) end) end)
    assert.is_false(ok)
    assert.equal("ok", tether.run(function() return "ok" end))
  end)
end)
