-- Regression: with two enclosing scopes cancelled, the inner one caught the
-- Cancelled and the code between the two scopes ran; the outermost cancelled
-- scope (below the nearest shield) must catch it, as in Trio (contract 2).
local tether = require("tether")

describe("two enclosing scopes cancelled at once", function()
  it("the outer scope catches: the code between them does not run", function()
    local between, reason = false, nil
    local outer, inner = tether.cancel_scope(), tether.cancel_scope()
    tether.run(function()
      outer:run(function()
        inner:run(function()
          inner:cancel("inner")
          outer:cancel("outer")
          local ok, e = pcall(tether.checkpoint)
          reason = e.reason
          error(e)
        end)
        between = true
      end)
    end)
    assert.is_false(between)
    assert.are.equal("outer", reason)
    assert.is_true(outer.cancelled_caught)
    assert.is_false(inner.cancelled_caught)
  end)

  it("a shield between them stops at the shield: the inner cancelled scope catches", function()
    local between = false
    local outer, inner = tether.cancel_scope(), tether.cancel_scope({ shield = true })
    tether.run(function()
      outer:run(function()
        outer:cancel()
        inner:run(function()
          inner:cancel()
          tether.checkpoint()
        end)
        between = true
        tether.checkpoint()
      end)
    end)
    assert.is_true(between)
    assert.is_true(inner.cancelled_caught)
    assert.is_true(outer.cancelled_caught)
  end)

  it("a Cancelled raised for the inner scope before the outer was cancelled goes on to the outer", function()
    local between = false
    local outer, inner = tether.cancel_scope(), tether.cancel_scope()
    tether.run(function()
      outer:run(function()
        inner:run(function()
          inner:cancel()
          local ok, e = pcall(tether.checkpoint)
          outer:cancel()
          error(e)                      -- inner's own Cancelled
        end)
        between = true
      end)
    end)
    assert.is_false(between)
    assert.is_true(outer.cancelled_caught)
  end)
end)
