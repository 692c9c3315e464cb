-- Regression: user code could construct and subclass tether.Cancelled, and
-- a task that re-raised a stale Cancelled (its scope long left) ended
-- "cancelled" with nothing reported. Only tether raises Cancelled; a stale
-- one counts as the task's failure (contract 3).
local tether = require("tether")

describe("tether.Cancelled", function()
  it("cannot be constructed by user code", function()
    local ok, e = pcall(tether.Cancelled, "fake")
    assert.is_false(ok)
    assert.matches("Cancelled cannot be constructed", tostring(e), 1, true)
    ok, e = pcall(tether.Cancelled, { message = "fake" })
    assert.is_false(ok)
  end)

  it("cannot be subclassed", function()
    local ok, e = pcall(tether.error_class, "MyCancel", tether.Cancelled)
    assert.is_false(ok)
    assert.matches("cannot be subclassed", tostring(e), 1, true)
  end)

  it("a stale Cancelled that ends a task is that task's failure, reported in the group", function()
    local stale, t, err
    tether.run(function()
      local scope = tether.cancel_scope()
      scope:run(function()
        scope:cancel()
        local _, c = pcall(tether.checkpoint)
        stale = c
      end)
      local ok, e = pcall(tether.with_group, function(g)
        t = g:spawn({ name = "stale" }, function() error(stale) end)
      end)
      err = not ok and e
    end)
    assert.is_true(tether.Cancelled:is(stale))
    assert.is_true(t:failed())
    assert.is_false(t:cancelled())
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal(stale, err.errors[1])
    assert.are.equal("stale", err:info(1).task)
  end)

  it("a stale Cancelled that ends a group's body is reported too", function()
    local stale, err
    tether.run(function()
      local scope = tether.cancel_scope()
      scope:run(function()
        scope:cancel()
        local _, c = pcall(tether.checkpoint)
        stale = c
      end)
      local ok, e = pcall(tether.with_group, function() error(stale) end)
      err = not ok and e
    end)
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal(stale, err.errors[1])
  end)
end)
