-- Regression: a scope let its own Cancelled escape when it arrived inside an
-- ErrorGroup built from pcall results; the scope must take it out, and a
-- group left empty is absorbed like the Cancelled itself (contract 3).
local tether = require("tether")

describe("a scope that catches its own Cancelled", function()
  it("absorbs an ErrorGroup that holds only that Cancelled", function()
    local r
    tether.run(function()
      r = table.pack(tether.move_on_after(0.001, function()
        local _, c = pcall(tether.sleep, 1)
        error(tether.ErrorGroup("from pcall", { c }))
      end))
    end)
    assert.are.equal(1, r.n)
    assert.is_false(r[1])
  end)

  it("takes the Cancelled out and lets the rest go on, nesting and message kept", function()
    local err
    local scope = tether.cancel_scope()
    tether.run(function()
      local ok, e = pcall(scope.run, scope, function()
        scope:cancel()
        local _, c = pcall(tether.checkpoint)
        error(tether.ErrorGroup("from pcall", { c, tether.ErrorGroup("inner", { "real", c }) }))
      end)
      err = not ok and e
    end)
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal("from pcall", err.message)
    assert.are.equal(1, err.errors.n)
    assert.are.equal("inner", err.errors[1].message)
    assert.are.same({ "real" }, { table.unpack(err.errors[1].errors, 1, err.errors[1].errors.n) })
  end)

  it("a task cancelled by t:cancel that raises such a group ends cancelled, not failed", function()
    local t
    tether.run(function()
      tether.with_group(function(g)
        t = g:spawn(function()
          local _, c = pcall(tether.sleep_forever)
          error(tether.ErrorGroup("from pcall", { c }))
        end)
        tether.sleep(0.001)
        t:cancel()
      end)
    end)
    assert.is_true(t:cancelled())
    assert.is_false(t:failed())
  end)
end)
