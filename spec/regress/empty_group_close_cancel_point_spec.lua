-- Regression: closing a group with nothing left to wait for raised the
-- enclosing scope's Cancelled but did not yield; the exit of with_group must
-- yield once, and raise that Cancelled only when it had to wait for children
-- (contract 2, as in Trio and AnyIO).
local tether = require("tether")

describe("the exit of with_group", function()
  it("with nothing to wait for is no cancel point, even in a cancelled scope", function()
    local after, results = false, nil
    local scope = tether.cancel_scope()
    tether.run(function()
      scope:run(function()
        scope:cancel()
        results = { tether.with_group(function() return "a", "b" end) }
        after = true
      end)
    end)
    assert.is_true(after)
    assert.are.same({ "a", "b" }, results)
  end)

  it("yields once: another ready task runs before the code after it", function()
    local order = {}
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function() order[#order + 1] = "other" end)
        tether.with_group(function() end)
        order[#order + 1] = "after"
      end)
    end)
    assert.are.same({ "other", "after" }, order)
  end)

  it("raises the enclosing scope's Cancelled when it had to wait for children", function()
    local after = false
    local scope = tether.cancel_scope()
    tether.run(function()
      tether.with_group(function(outer)
        outer:spawn(function() tether.sleep(0.01); scope:cancel() end)
        scope:run(function()
          tether.with_group(function(g)
            g:spawn(tether.sleep_forever)
          end)
          after = true
        end)
      end)
    end)
    assert.is_false(after)
    assert.is_true(scope.cancelled_caught)
  end)

  it("passes on a Cancelled that interrupted the body", function()
    local after = false
    local scope = tether.cancel_scope()
    tether.run(function()
      scope:run(function()
        scope:cancel()
        tether.with_group(function() tether.checkpoint() end)
        after = true
      end)
    end)
    assert.is_false(after)
    assert.is_true(scope.cancelled_caught)
  end)
end)
