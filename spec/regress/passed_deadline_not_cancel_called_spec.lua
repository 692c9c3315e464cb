-- Regression: a scope whose deadline had passed said cancel_called = false
-- until it ran; it must say true, also before it has run (contract 2).
local tether = require("tether")

describe("a scope whose deadline has passed", function()
  it("reports cancel_called = true before it runs", function()
    local scope = tether.cancel_scope({ deadline = tether.now() - 1 })
    assert.is_true(scope.cancel_called)
    local r
    tether.run(function() r = table.pack(scope:run(function() tether.checkpoint() end)) end)
    assert.is_false(r[1])
    assert.is_true(scope.cancelled_caught)
  end)

  it("reports cancel_called = true while it runs, before the deadline timer fired", function()
    local seen
    tether.run(function()
      local scope = tether.cancel_scope({ timeout = 0.001 })
      scope:run(function()
        local t0 = os.clock()
        while os.clock() - t0 < 0.005 do end   -- no checkpoint: the timer cannot fire
        seen = scope.cancel_called
      end)
    end)
    assert.is_true(seen)
  end)

  it("a scope without a deadline, or with one still ahead, is not cancelled", function()
    assert.is_false(tether.cancel_scope().cancel_called)
    assert.is_false(tether.cancel_scope({ deadline = tether.now() + 60 }).cancel_called)
    assert.is_false(tether.cancel_scope({ timeout = 0 }).cancel_called)   -- counts from run
  end)
end)
