-- Regression: calling an error class with no arguments stored the new
-- instance as its own message (the stack slot of the missing argument was
-- reused), and tostring of it recursed until "C stack overflow".
local tether = require("tether")

describe("an error class called with no arguments", function()
  it("makes an instance without a message whose tostring is the class name", function()
    local MyErr = tether.error_class("MyErr")
    local e = MyErr()
    assert.is_nil(rawget(e, "message"))
    assert.are.equal("MyErr", tostring(e))
    assert.is_true(MyErr:is(e))
  end)
end)
