-- tether.catch / tether.except: except*-style handling of ErrorGroups and single errors (contract §3).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

-- sample(): outer "outer msg": [ A1 (MyErr), inner "inner msg": [ B1 (OtherErr), A2 (SubErr < MyErr) ], "plain string" ]
local raised, sample, shape = support.raised, support.sample, support.shape
local capture_cancelled = support.capture_cancelled

describe("tether.catch", function()
  it("tries handlers in order, calls each at most once with the leaves no earlier handler took", function()
    local r = tether.run(function()
      local s = sample()
      local calls = { h1 = 0, h2 = 0, h3 = 0, h4 = 0 }
      local got = {}
      local res = table.pack(tether.catch(function() error(s.outer) end, {
        { s.MyErr, function(eg) calls.h1 = calls.h1 + 1; got.h1 = eg end },
        { s.SubErr, function(eg) calls.h2 = calls.h2 + 1; got.h2 = eg end },
        { s.OtherErr, function(eg) calls.h3 = calls.h3 + 1; got.h3 = eg end },
        { "plain", function(eg) calls.h4 = calls.h4 + 1; got.h4 = eg end },
      }))
      return { s = s, calls = calls, got = got, res = res }
    end)
    local s = r.s
    assert.same({ h1 = 1, h2 = 0, h3 = 1, h4 = 1 }, r.calls)
    assert.equal(0, r.res.n)
    assert.is_true(tether.ErrorGroup:is(r.got.h1))
    assert.same({ msg = "outer msg", n = 2, s.A1, { msg = "inner msg", n = 1, s.A2 } }, shape(r.got.h1))
    assert.same({ msg = "outer msg", n = 1, { msg = "inner msg", n = 1, s.B1 } }, shape(r.got.h3))
    assert.same({ "plain string" }, r.got.h4:leaves())
  end)

  it("raises the leaves no handler matched as an ErrorGroup keeping nesting and message", function()
    local s, e, called = tether.run(function()
      local s = sample()
      local called = 0
      local e = raised(tether.catch, function() error(s.outer) end, {
        { s.SubErr, function() called = called + 1 end },
      })
      return s, e, called
    end)
    assert.equal(1, called)
    assert.is_true(tether.ErrorGroup:is(e))
    assert.same({ msg = "outer msg", n = 3, s.A1, { msg = "inner msg", n = 1, s.B1 }, "plain string" }, shape(e))
  end)

  it("raises handler errors first, then the unmatched leaves, in one new ErrorGroup", function()
    local s, e, h1err, h2err = tether.run(function()
      local s = sample()
      local h1err, h2err = { "first handler failed" }, tether.Error("second handler failed")
      local e = raised(tether.catch, function() error(s.outer) end, {
        { s.MyErr, function() error(h1err) end },
        { "plain", function() error(h2err) end },
      })
      return s, e, h1err, h2err
    end)
    assert.is_true(tether.ErrorGroup:is(e))
    assert.equal(3, e.errors.n)
    assert.is_true(rawequal(h1err, e.errors[1]))
    assert.is_true(rawequal(h2err, e.errors[2]))
    assert.is_true(tether.ErrorGroup:is(e.errors[3]))
    assert.same({ msg = "outer msg", n = 1, { msg = "inner msg", n = 1, s.B1 } }, shape(e.errors[3]))
  end)

  it("wraps a handler's error in a new ErrorGroup even when nothing else is left", function()
    local e, herr = tether.run(function()
      local s = sample()
      local herr = { "handler failed" }
      local e = raised(tether.catch, function() error(s.outer) end, {
        { function() return true end, function() error(herr) end },
      })
      return e, herr
    end)
    assert.is_true(tether.ErrorGroup:is(e))
    assert.equal(1, e.errors.n)
    assert.is_true(rawequal(herr, e.errors[1]))
  end)

  it("lets a Cancelled raised in a handler propagate unchanged when nothing else is left", function()
    local r = tether.run(function()
      local s = sample()
      local r = {}
      local scope = tether.cancel_scope({})
      r.scope = scope:run(function()
        local ok, e = pcall(tether.catch, function() error(s.outer) end, {
          { function() return true end, function()
            scope:cancel("from handler")
            local _, c = pcall(tether.checkpoint)
            r.captured = c
            error(c)
          end },
        })
        r.ok, r.e = ok, e
        tether.checkpoint()
        r.after = true
      end)
      return r
    end)
    assert.is_false(r.ok)
    assert.is_true(tether.Cancelled:is(r.captured))
    assert.is_true(rawequal(r.captured, r.e))
    assert.equal(false, r.scope)
    assert.is_nil(r.after)
  end)

  it("raises the unmatched group over a Cancelled from a handler; the cancel fires again at the next checkpoint", function()
    local r = tether.run(function()
      local s = sample()
      local r = {}
      local scope = tether.cancel_scope({})
      r.scope = scope:run(function()
        local ok, e = pcall(tether.catch, function() error(s.outer) end, {
          { s.MyErr, function()
            scope:cancel("from handler")
            tether.checkpoint()
          end },
        })
        r.ok, r.e = ok, e
        local ok2, e2 = pcall(tether.checkpoint)
        r.next_ok, r.next_cancelled = ok2, tether.Cancelled:is(e2)
        error(e2)
      end)
      r.s = s
      return r
    end)
    assert.is_false(r.ok)
    assert.is_true(tether.ErrorGroup:is(r.e))
    local leaves = r.e:leaves()
    for _, leaf in ipairs(leaves) do
      assert.is_false(tether.Cancelled:is(leaf), "a Cancelled was put into the ErrorGroup")
    end
    assert.equal(2, #leaves)
    assert.is_true(rawequal(r.s.B1, leaves[1]))
    assert.equal("plain string", leaves[2])
    assert.is_false(r.next_ok)
    assert.is_true(r.next_cancelled)
    assert.equal(false, r.scope)
  end)

  it("re-raises a non-group error that nothing matches unchanged", function()
    local r = tether.run(function()
      local MyErr = tether.error_class("MyErr")
      local OtherErr = tether.error_class("OtherErr")
      local tbl, inst = { "mine" }, OtherErr("other")
      local called = false
      local hs = { { MyErr, function() called = true end }, { "^nomatch$", function() called = true end } }
      return {
        tbl_same = rawequal(tbl, raised(tether.catch, function() error(tbl) end, hs)),
        inst_same = rawequal(inst, raised(tether.catch, function() error(inst) end, hs)),
        str = raised(tether.catch, function() error("just a string", 0) end, hs),
        num = raised(tether.catch, function() error(7) end, hs),
        called = called,
      }
    end)
    assert.same({ tbl_same = true, inst_same = true, str = "just a string", num = 7, called = false }, r)
  end)

  it("treats a non-group error as a group of one when a handler matches it", function()
    local r = tether.run(function()
      local MyErr = tether.error_class("MyErr")
      local e = MyErr("single")
      local got
      local res = table.pack(tether.catch(function() error(e) end, {
        { MyErr, function(eg) got = eg end },
      }))
      return { res_n = res.n, is_group = tether.ErrorGroup:is(got), n = got.errors.n, same = rawequal(got.errors[1], e) }
    end)
    assert.same({ res_n = 0, is_group = true, n = 1, same = true }, r)
  end)

  it("matches a plain string error by pattern and a nil error by predicate", function()
    local r = tether.run(function()
      local r = {}
      tether.catch(function() error("disk full on /dev/sda", 0) end, {
        { "disk full", function(eg) r.pattern = eg.errors[1] end },
      })
      tether.catch(function() error(nil) end, {
        { function(leaf) return leaf == nil end, function(eg) r.pred_n = eg.errors.n; r.pred_nil = eg.errors[1] == nil end },
      })
      return r
    end)
    assert.same({ pattern = "disk full on /dev/sda", pred_n = 1, pred_nil = true }, r)
  end)

  it("returns fn's results when fn raised nothing, and calls no handler", function()
    local r, called = tether.run(function()
      local called = false
      local r = table.pack(tether.catch(function()
        tether.checkpoint()
        return 1, nil, "three"
      end, { { function() return true end, function() called = true end } }))
      return r, called
    end)
    assert.same({ n = 3, 1, nil, "three" }, r)
    assert.is_false(called)
  end)

  it("returns nothing when every error was handled", function()
    local n = tether.run(function()
      local s = sample()
      return select("#", tether.catch(function() error(s.outer) end, {
        { { s.MyErr, s.OtherErr, "plain" }, function() return "ignored", "values" end },
      }))
    end)
    assert.equal(0, n)
  end)

  it("lets a Cancelled through untouched unless a handler names tether.Cancelled", function()
    local r = tether.run(function()
      local r = { called = false, predicate_saw = false }
      local scope = tether.cancel_scope({})
      scope:run(function()
        scope:cancel("stop")
        local ok, e = pcall(tether.catch, function() tether.checkpoint() end, {
          { tether.Error, function() r.called = true end },
          { ".", function() r.called = true end },
          { "Cancelled", function() r.called = true end },
          { function(leaf) r.predicate_saw = true; return true end, function() r.called = true end },
        })
        r.through = tether.Cancelled:is(e)
        r.reason = e.reason
        -- naming tether.Cancelled does catch it
        tether.catch(function() tether.checkpoint() end, {
          { tether.Cancelled, function(eg) r.cancel_handler = tether.Cancelled:is(eg.errors[1]) end },
        })
        r.after_catch = true
        local ok2, e2 = pcall(tether.checkpoint)
        r.still_cancelled = tether.Cancelled:is(e2)
        error(e2)
      end)
      return r
    end)
    assert.is_false(r.called)
    assert.is_false(r.predicate_saw)
    assert.is_true(r.through)
    assert.equal("stop", r.reason)
    assert.is_true(r.cancel_handler)
    assert.is_true(r.after_catch)
    assert.is_true(r.still_cancelled)
  end)

  it("handles what a real task group raised, leaving other leaves to propagate", function()
    local r = tether.run(function()
      local MyErr = tether.error_class("MyErr")
      local OtherErr = tether.error_class("OtherErr")
      local handled
      local ok, e = pcall(tether.catch, function()
        tether.with_group({ policy = "supervisor" }, function(g)
          g:spawn({ name = "m1" }, function() error(MyErr("mine")) end)
          g:spawn({ name = "o1" }, function() tether.checkpoint(); error(OtherErr("other")) end)
          g:spawn({ name = "ok" }, function() tether.sleep(0.01); return 1 end)
        end)
      end, {
        { MyErr, function(eg) handled = eg:leaves() end },
      })
      return { ok = ok, e = e, handled = handled, OtherErr = OtherErr, MyErr = MyErr }
    end)
    assert.is_false(r.ok)
    assert.equal(1, #r.handled)
    assert.is_true(r.MyErr:is(r.handled[1]))
    assert.is_true(tether.ErrorGroup:is(r.e))
    local leaves = r.e:leaves()
    assert.equal(1, #leaves)
    assert.is_true(r.OtherErr:is(leaves[1]))
  end)

  it("lets handlers block", function()
    local slept = tether.run(function()
      local slept
      tether.catch(function() error("x", 0) end, {
        { "x", function()
          local t0 = tether.now()
          tether.sleep(0.01)
          slept = tether.now() - t0
        end },
      })
      return slept
    end)
    assert.is_true(slept >= 0.01 - 1e-6)
  end)
end)

describe("tether.except", function()
  it("handles an error already caught by pcall the same way", function()
    local r = tether.run(function()
      local s = sample()
      local ok, err = pcall(error, s.outer)
      local got
      local e = raised(tether.except, err, { { s.MyErr, function(eg) got = eg end } })
      return { s = s, got = got, e = e }
    end)
    local s = r.s
    assert.same({ msg = "outer msg", n = 2, s.A1, { msg = "inner msg", n = 1, s.A2 } }, shape(r.got))
    assert.same({ msg = "outer msg", n = 2, { msg = "inner msg", n = 1, s.B1 }, "plain string" }, shape(r.e))
  end)

  it("returns nothing when every leaf is handled", function()
    local n, calls = tether.run(function()
      local s = sample()
      local _, err = pcall(error, s.outer)
      local calls = 0
      local n = select("#", tether.except(err, {
        { s.MyErr, function() calls = calls + 1 end },
        { function() return true end, function() calls = calls + 1 end },
      }))
      return n, calls
    end)
    assert.equal(0, n)
    assert.equal(2, calls)
  end)

  it("re-raises an unmatched non-group error unchanged, and a Cancelled untouched", function()
    local r = tether.run(function()
      local tbl = {}
      local c = capture_cancelled("test")
      local hs = { { tether.Error, function() end }, { ".*", function() end }, { function() return true end, function() end } }
      return {
        tbl = rawequal(tbl, raised(tether.except, tbl, { { tether.TimeoutError, function() end } })),
        cancelled = rawequal(c, raised(tether.except, c, hs)),
      }
    end)
    assert.same({ tbl = true, cancelled = true }, r)
  end)

  it("handles a nil error: re-raised as nil when unmatched, a group of one nil when matched", function()
    local r = tether.run(function()
      local ok, e = pcall(tether.except, nil, { { "^x$", function() end }, { tether.Error, function() end } })
      local n, is_nil
      local res = table.pack(tether.except(nil, {
        { function(leaf) return leaf == nil end, function(eg) n, is_nil = eg.errors.n, eg.errors[1] == nil end },
      }))
      return { ok = ok, e_is_nil = e == nil, n = n, is_nil = is_nil, res_n = res.n }
    end)
    assert.same({ ok = false, e_is_nil = true, n = 1, is_nil = true, res_n = 0 }, r)
  end)

  it("gives handlers groups that still know each leaf's task", function()
    local task, tb = tether.run(function()
      local task, tb
      tether.catch(function()
        tether.with_group(function(g)
          g:spawn({ name = "named-failer" }, function() error("zz", 0) end)
        end)
      end, { { "zz", function(eg) local i = eg:leaves() and eg:info(1); task, tb = i and i.task, i and i.traceback end } })
      return task, tb
    end)
    assert.equal("named-failer", task)
    assert.matches("catch_spec.lua", tb, 1, true)
  end)

  it("raises handler errors with the unmatched leaves", function()
    local e, herr, s = tether.run(function()
      local s = sample()
      local herr = "handler broke"
      local e = raised(tether.except, s.outer, { { "plain", function() error(herr, 0) end } })
      return e, herr, s
    end)
    assert.is_true(tether.ErrorGroup:is(e))
    assert.equal(2, e.errors.n)
    assert.equal(herr, e.errors[1])
    assert.same({ msg = "outer msg", n = 2, s.A1, { msg = "inner msg", n = 2, s.B1, s.A2 } }, shape(e.errors[2]))
  end)
end)
