-- Regression: g:start in a cancelled scope returned normally when the child
-- called started() at once; every other checkpoint raises there (contract 2).
local tether = require("tether")

describe("g:start in a cancelled scope", function()
  it("raises Cancelled even when the child calls started at once; the child stays in the group", function()
    local err, child_done, after_start = nil, false, false
    local scope = tether.cancel_scope()
    tether.run(function()
      tether.with_group(function(g)
        scope:run(function()
          scope:cancel()
          local ok, e = pcall(g.start, g, function(started)
            started("ready")
            tether.sleep(0.01)          -- in the group now: not cancelled
            child_done = true
          end)
          err = not ok and e
          after_start = ok
          if not ok then error(e) end
        end)
      end)
    end)
    assert.is_false(after_start)
    assert.is_true(tether.Cancelled:is(err))
    assert.is_true(scope.cancelled_caught)
    assert.is_true(child_done)
  end)
end)
