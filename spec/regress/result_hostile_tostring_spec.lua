-- Regression: t:result() on a task that failed with an error object whose
-- __tostring raises re-raised that __tostring's error ("TOSTRING-BOOM")
-- instead of its own clear "t:result: task 'NAME' failed: ..." error:
-- l_task_result formats the message with luaL_tolstring, unprotected (the
-- ErrorGroup rendering protects the same call).  Found by spec/hostile_spec.lua.
local tether = require("tether")

describe("t:result on a task whose error has a raising __tostring", function()
  it("raises the clear t:result error naming the task", function()
    local boom = setmetatable({}, { __tostring = function() error("TOSTRING-BOOM") end })
    local t
    pcall(tether.run, function()
      tether.with_group(function(g)
        t = g:spawn({ name = "hostile" }, function() error(boom) end)
      end)
    end)
    assert.is_true(t:failed())
    local ok, err = pcall(t.result, t)
    assert.is_false(ok)
    local msg = type(err) == "table" and err.message or err
    assert.is_string(msg)
    assert.truthy(msg:find("t:result: task 'hostile' failed", 1, true), "t:result raised: " .. tostring(msg))
  end)
end)
