-- Regression: an unknown option key was reported as "unknown option of type userdata":
-- the key was read from the stack top after luaL_buffinit had pushed its placeholder.
local tether = require("tether")

describe("regress: unknown option names the key", function()
  it("says which key is unknown", function()
    local ok, e = pcall(tether.run, function()
      tether.process.run({ "true" }, { timeout = 1 })
    end)
    assert.is_false(ok)
    assert.matches("unknown option 'timeout'", tostring(e))
    ok, e = pcall(tether.run, function()
      tether.process.run({ "true" }, { [1] = "x" })
    end)
    assert.matches("unknown option of type number", tostring(e))
  end)
end)
