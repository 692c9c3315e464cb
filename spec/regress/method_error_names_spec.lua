-- Regression: bad arguments to methods named Lua's guess ('spawn', 'run',
-- 'cancel', 'split') or the C module; every message now names the function as
-- a user writes it: 'tether.sleep', 'g:spawn', 't:cancel', 'scope:run', 'eg:split'.
local tether = require("tether")

local function err_of(fn)
  local ok, e = pcall(fn)
  assert.is_false(ok, "expected an error")
  return tostring(e)
end

describe("a bad argument", function()
  it("to a function names the function, never tether.core", function()
    for name, call in pairs({
      ["tether.sleep"] = function() tether.sleep("x") end,
      ["tether.move_on_after"] = function() tether.move_on_after(-1, print) end,
      ["tether.with_group"] = function() tether.run(function() tether.with_group(42) end) end,
      ["tether.gather"] = function() tether.gather(42) end,
    }) do
      local msg = err_of(call)
      -- Lua names a function called as a field by the field ('sleep'),
      -- tether's own checks by its full name ('tether.with_group')
      assert.is_truthy(msg:find("'" .. name .. "'", 1, true)
                       or msg:find("'" .. name:gsub("^tether%.", "") .. "'", 1, true), msg)
      assert.is_nil(msg:find("tether.core", 1, true), msg)
    end
  end)

  it("to a method names it as obj:method with the argument counted after self", function()
    local msgs = {}
    tether.run(function()
      tether.with_group(function(g)
        msgs["g:spawn"] = err_of(function() g:spawn(42) end)
        msgs["g:start"] = err_of(function() g:start("x") end)
        msgs["g:cancel"] = err_of(function() g:cancel(42) end)
        local t = g:spawn(function() end)
        msgs["t:cancel"] = err_of(function() t:cancel({}) end)
      end)
      local scope = tether.cancel_scope()
      msgs["scope:run"] = err_of(function() scope:run(42) end)
      msgs["scope:cancel"] = err_of(function() scope:cancel(42) end)
    end)
    local eg = tether.ErrorGroup("m", { "a" })
    msgs["eg:split"] = err_of(function() eg:split(42) end)
    msgs["eg:info"] = err_of(function() eg:info("x") end)
    for name, msg in pairs(msgs) do
      assert.matches("bad argument #1 to '" .. name .. "'", msg, 1, true)
    end
  end)

  it("a method called with a dot names the method and says to call it with a colon", function()
    local msg
    tether.run(function()
      tether.with_group(function(g)
        msg = err_of(function() g.spawn(function() end) end)
      end)
    end)
    assert.matches("'g:spawn'", msg, 1, true)
    assert.matches("call it as a method", msg, 1, true)
    assert.matches("'eg:leaves'", err_of(function() tether.ErrorGroup("m", { 1 }).leaves() end), 1, true)
  end)
end)
