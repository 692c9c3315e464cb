-- Cancellation as users see it: level-triggered Cancelled, cancel scopes, shield, checkpoints (contract §2).
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local function closer(f) return setmetatable({}, { __close = f }) end

local is_cancelled = support.is_cancelled

describe("cancellation", function()
  describe("is level-triggered", function()
    it("raises Cancelled at every checkpoint in a cancelled scope, even after pcall swallowed it", function()
      local hits, ok, caught, after = tether.run(function()
        local hits = {}
        local scope = tether.cancel_scope({})
        local ok = scope:run(function()
          scope:cancel()
          for _ = 1, 3 do
            local pok, e = pcall(tether.checkpoint)
            hits[#hits + 1] = (not pok) and is_cancelled(e)
          end
          local pok, e = pcall(tether.sleep, 10)
          hits[#hits + 1] = (not pok) and is_cancelled(e)
          pok, e = pcall(tether.sleep, 0)
          hits[#hits + 1] = (not pok) and is_cancelled(e)
          tether.checkpoint() -- not swallowed: this one leaves the scope
          hits[#hits + 1] = "checkpoint returned inside a cancelled scope"
        end)
        -- once the scope is left, checkpoints no longer raise
        tether.checkpoint()
        tether.sleep(0)
        return hits, ok, scope.cancelled_caught, "after"
      end)
      assert.same({ true, true, true, true, true }, hits)
      assert.equal(false, ok)
      assert.is_true(caught)
      assert.equal("after", after)
    end)

    it("keeps cancelling a task blocked in sleep each time it swallows Cancelled and blocks again", function()
      local swallowed, scope_result, elapsed = tether.run(function()
        local t0 = tether.now()
        local scope = tether.cancel_scope({})
        local swallowed, started, scope_result = 0, false, nil
        tether.with_group(function(g)
          g:spawn(function()
            scope_result = scope:run(function()
              started = true
              while swallowed < 3 do
                local ok, e = pcall(tether.sleep, 10)
                if not ok and is_cancelled(e) then swallowed = swallowed + 1 end
              end
              tether.sleep(10)
            end)
          end)
          while not started do tether.checkpoint() end
          scope:cancel()
        end)
        return swallowed, scope_result, tether.now() - t0
      end)
      assert.equal(3, swallowed)
      assert.equal(false, scope_result)
      assert.is_true(elapsed < 5, "the cancelled sleeps did not wake promptly: " .. elapsed)
    end)

    it("cancels a scope from another task while the scope's code is blocked", function()
      local result, caught = tether.run(function()
        local scope = tether.cancel_scope({})
        local result
        tether.with_group(function(g)
          g:spawn(function()
            result = scope:run(function() tether.sleep(10); return "not cancelled" end)
          end)
          tether.sleep(0)
          tether.sleep(0)
          scope:cancel()
        end)
        return result, scope.cancelled_caught
      end)
      assert.equal(false, result)
      assert.is_true(caught)
    end)

    it("delivers a cancel requested before scope:run at the first checkpoint inside it", function()
      local result, before, after = tether.run(function()
        local scope = tether.cancel_scope({})
        scope:cancel()
        local before, after = false, false
        local result = scope:run(function()
          before = true
          tether.checkpoint()
          after = true
        end)
        return result, before, after
      end)
      assert.equal(false, result)
      assert.is_true(before)
      assert.is_false(after)
    end)
  end)

  describe("scopes", function()
    it("lets the cancelled scope absorb its own Cancelled and carry on after it", function()
      local r = tether.run(function()
        local scope = tether.cancel_scope({})
        local ok = scope:run(function()
          scope:cancel()
          tether.sleep(10)
        end)
        tether.sleep(0.001) -- the caller is not cancelled
        return { ok = ok, called = scope.cancel_called, caught = scope.cancelled_caught }
      end)
      assert.same({ ok = false, called = true, caught = true }, r)
    end)

    it("does not let an inner, uncancelled scope absorb an outer cancellation", function()
      local r = tether.run(function()
        local outer = tether.cancel_scope({})
        local inner = tether.cancel_scope({})
        local r = {}
        r.outer = outer:run(function()
          local ok, e = pcall(inner.run, inner, function()
            outer:cancel()
            tether.checkpoint()
            return "inner finished"
          end)
          r.inner_ok, r.inner_err_cancelled = ok, is_cancelled(e)
          -- also a move_on_after whose own deadline has not passed
          ok, e = pcall(tether.move_on_after, 60, function() tether.sleep(10) end)
          r.mo_ok, r.mo_err_cancelled = ok, is_cancelled(e)
          tether.checkpoint()
          r.after_checkpoint = true
        end)
        r.outer_caught = outer.cancelled_caught
        r.inner_caught = inner.cancelled_caught
        r.inner_called = inner.cancel_called
        return r
      end)
      assert.equal(false, r.outer)
      assert.is_false(r.inner_ok)
      assert.is_true(r.inner_err_cancelled)
      assert.is_false(r.mo_ok)
      assert.is_true(r.mo_err_cancelled)
      assert.is_nil(r.after_checkpoint)
      assert.is_true(r.outer_caught)
      assert.is_false(r.inner_caught)
      assert.is_false(r.inner_called)
    end)

    it("returns true and the results when a cancel lands after the last checkpoint", function()
      local r = tether.run(function()
        local scope = tether.cancel_scope({})
        local res = table.pack(scope:run(function()
          tether.checkpoint()
          scope:cancel()
          return "a", nil, "c"
        end))
        return { res = res, called = scope.cancel_called, caught = scope.cancelled_caught }
      end)
      assert.equal(true, r.res[1])
      assert.equal(4, r.res.n)
      assert.equal("a", r.res[2])
      assert.is_nil(r.res[3])
      assert.equal("c", r.res[4])
      assert.is_true(r.called)
      assert.is_false(r.caught)
    end)

    it("treats scope:cancel() after the scope finished as a harmless no-op", function()
      local ok, again = tether.run(function()
        local scope = tether.cancel_scope({})
        local ok = scope:run(function() tether.checkpoint(); return 1 end)
        scope:cancel()
        scope:cancel()
        tether.checkpoint()
        return ok, "still running"
      end)
      assert.is_true(ok)
      assert.equal("still running", again)
    end)

    it("carries the reason given to scope:cancel in the Cancelled that code sees", function()
      local reason, text = tether.run(function()
        local scope = tether.cancel_scope({})
        local reason, text
        scope:run(function()
          scope:cancel("user pressed stop")
          local ok, e = pcall(tether.checkpoint)
          reason, text = e.reason, tostring(e)
          error(e)
        end)
        return reason, text
      end)
      assert.equal("user pressed stop", reason)
      assert.matches("Cancelled", text, 1, true)
      assert.matches("user pressed stop", text, 1, true)
    end)
  end)

  describe("unwinding", function()
    it("runs <close> variables innermost first when Cancelled unwinds, and lets them block under a shield", function()
      local log, result = {}, nil
      result = tether.run({ clock = "virtual" }, function()
        return tether.move_on_after(0.02, function()
          local a <close> = closer(function(_, err)
            log[#log + 1] = "outer close " .. tostring(is_cancelled(err))
          end)
          local function inner()
            local b <close> = closer(function(_, err)
              log[#log + 1] = "inner close start " .. tostring(is_cancelled(err))
              tether.shield(function() tether.sleep(0.03) end)
              log[#log + 1] = "inner close end"
            end)
            tether.sleep(10)
          end
          inner()
        end)
      end)
      assert.equal(false, result)
      assert.same({ "inner close start true", "inner close end", "outer close true" }, log)
    end)

    it("runs a pcall handler that blocks (shielded sleep) before re-raising Cancelled", function()
      local log = {}
      local result, elapsed = tether.run({ clock = "virtual" }, function()
        local t0 = tether.now()
        local r = tether.move_on_after(0.02, function()
          local ok, e = pcall(tether.sleep, 10)
          log[#log + 1] = "handler saw cancelled " .. tostring(is_cancelled(e))
          local s0 = tether.now()
          tether.shield(function() tether.sleep(0.05) end)
          log[#log + 1] = "shielded cleanup slept " .. tostring(tether.now() - s0 >= 0.05 - 1e-6)
          error(e)
        end)
        return r, tether.now() - t0
      end)
      assert.equal(false, result)
      assert.same({ "handler saw cancelled true", "shielded cleanup slept true" }, log)
      assert.is_true(elapsed < 5)
    end)

    it("runs <close> and blocking cleanup in child tasks cancelled by a failing sibling", function()
      local log = {}
      local err = tether.run(function()
        local ok, e = pcall(tether.with_group, function(g)
          for i = 1, 2 do
            g:spawn({ name = "worker" .. i }, function()
              local c <close> = closer(function(_, cerr)
                tether.shield(function() tether.sleep(0.01) end)
                log[#log + 1] = "worker" .. i .. " closed " .. tostring(is_cancelled(cerr))
              end)
              tether.sleep(10)
            end)
          end
          g:spawn({ name = "failer" }, function()
            tether.sleep(0.01)
            error("failer broke", 0)
          end)
        end)
        assert(not ok, "with_group should have raised")
        return e
      end)
      table.sort(log)
      assert.same({ "worker1 closed true", "worker2 closed true" }, log)
      assert.is_true(tether.ErrorGroup:is(err))
      assert.equal(1, err.errors.n)
      assert.equal("failer broke", err.errors[1])
    end)

    it("raises Cancelled again from an unshielded blocking call in a cleanup handler", function()
      local r = tether.run({ clock = "virtual" }, function()
        local r = {}
        r.result = tether.move_on_after(0.01, function()
          local ok = pcall(tether.sleep, 10)
          r.first = ok
          local ok2, e2 = pcall(tether.sleep, 0.01)
          r.second_ok, r.second_cancelled = ok2, is_cancelled(e2)
          tether.sleep(10)
        end)
        return r
      end)
      assert.equal(false, r.result)
      assert.is_false(r.first)
      assert.is_false(r.second_ok)
      assert.is_true(r.second_cancelled)
    end)
  end)

  describe("shield", function()
    it("protects from outer cancellation and returns fn's results", function()
      local r = tether.run(function()
        local r = {}
        local outer = tether.cancel_scope({})
        r.outer = outer:run(function()
          outer:cancel()
          r.shielded = table.pack(tether.shield(function(a, b)
            tether.sleep(0.01)
            tether.checkpoint()
            return a + b, nil, "done"
          end, 1, 2))
          tether.checkpoint()
          r.after = true
        end)
        return r
      end)
      assert.equal(false, r.outer)
      assert.equal(3, r.shielded.n)
      assert.equal(3, r.shielded[1])
      assert.is_nil(r.shielded[2])
      assert.equal("done", r.shielded[3])
      assert.is_nil(r.after)
    end)

    it("protects from outer deadlines: the shielded work finishes, the outer scope then fires", function()
      local result, finished, elapsed = tether.run({ clock = "virtual" }, function()
        local t0, finished = tether.now(), false
        local result = tether.move_on_after(0.01, function()
          tether.shield(function()
            tether.sleep(0.05)
            finished = true
          end)
          tether.sleep(10)
        end)
        return result, finished, tether.now() - t0
      end)
      assert.equal(false, result)
      assert.is_true(finished)
      assert.is_true(elapsed >= 0.05 - 1e-6)
      assert.is_true(elapsed < 5)
    end)

    it("does not protect a shielded scope from its own cancellation", function()
      local r = tether.run(function()
        local r = {}
        local outer = tether.cancel_scope({})
        r.outer = outer:run(function()
          outer:cancel()
          local sc = tether.cancel_scope({ shield = true })
          r.shield_field = sc.shield
          r.inner = sc:run(function()
            tether.sleep(0.01)
            r.before_own_cancel = true
            sc:cancel()
            tether.sleep(10)
            r.after_own_cancel = true
          end)
          r.inner_caught = sc.cancelled_caught
          tether.checkpoint()
          r.after_outer = true
        end)
        r.outer_caught = outer.cancelled_caught
        return r
      end)
      assert.is_true(r.shield_field)
      assert.is_true(r.before_own_cancel)
      assert.is_nil(r.after_own_cancel)
      assert.equal(false, r.inner)
      assert.is_true(r.inner_caught)
      assert.is_nil(r.after_outer)
      assert.equal(false, r.outer)
      assert.is_true(r.outer_caught)
    end)

    it("does not protect from its own deadline", function()
      local r, elapsed = tether.run({ clock = "virtual" }, function()
        local t0 = tether.now()
        local outer = tether.cancel_scope({})
        local r
        outer:run(function()
          outer:cancel()
          r = tether.cancel_scope({ shield = true, timeout = 0.02 }):run(function()
            tether.sleep(10)
          end)
        end)
        return r, tether.now() - t0
      end)
      assert.equal(false, r)
      assert.is_true(elapsed < 5)
    end)

    it("lets an error from the shielded function through unchanged", function()
      local boom = {}
      local ok, e = tether.run(function()
        return pcall(tether.shield, function() tether.checkpoint(); error(boom) end)
      end)
      assert.is_false(ok)
      assert.is_true(rawequal(boom, e))
    end)

    it("keeps a plain cancel_scope unshielded by default", function()
      local shield = tether.run(function()
        return tether.cancel_scope({}).shield
      end)
      assert.falsy(shield)
    end)
  end)

  describe("checkpoints", function()
    for _, case in ipairs({
      { "tether.checkpoint()", function() tether.checkpoint() end },
      { "sleep(0)", function() tether.sleep(0) end },
    }) do
      local name, step = case[1], case[2]
      it(name .. " lets another ready task run", function()
        local log = tether.run(function()
          local log = {}
          tether.with_group(function(g)
            g:spawn(function() log[#log + 1] = "child" end)
            log[#log + 1] = "body before"
            step()
            log[#log + 1] = "body after"
          end)
          return log
        end)
        assert.same({ "body before", "child", "body after" }, log)
      end)
    end

    it("interleaves two tasks that loop over checkpoints", function()
      local log = tether.run(function()
        local log = {}
        tether.with_group(function(g)
          for _, name in ipairs({ "A", "B" }) do
            g:spawn(function()
              for _ = 1, 3 do
                log[#log + 1] = name
                tether.checkpoint()
              end
            end)
          end
        end)
        return log
      end)
      local s = table.concat(log)
      assert.equal(6, #s)
      assert.is_true(s:find("B", 1, true) < s:find("A[^A]*$"), "B never ran while A looped: " .. s)
    end)

    it("does not starve timers while a task spins on checkpoints or sleep(0)", function()
      for _, op in ipairs({ "checkpoint", "sleep0" }) do
        local flag, spins = tether.run(function()
          local flag, spins = false, 0
          tether.with_group(function(g)
            g:spawn(function() tether.sleep(0.01); flag = true end)
            local limit = tether.now() + 10
            while not flag and spins < 200000 and tether.now() < limit do
              if op == "checkpoint" then tether.checkpoint() else tether.sleep(0) end
              spins = spins + 1
            end
          end)
          return flag, spins
        end)
        assert.is_true(flag, op .. ": the timer task never ran (" .. spins .. " spins)")
      end
    end)

    it("does not raise from checkpoints outside any cancelled scope", function()
      local ok = tether.run(function()
        for _ = 1, 5 do tether.checkpoint(); tether.sleep(0) end
        return "fine"
      end)
      assert.equal("fine", ok)
    end)

    it("a spawn under a limit checkpoints only when it has to wait", function()
      local r = tether.run(function()
        local r = {}
        tether.with_group({ limit = 1 }, function(g)
          local scope = tether.cancel_scope({})
          scope:run(function()
            scope:cancel()
            -- room under the limit: no wait, so no checkpoint, so no Cancelled
            local ok, t = pcall(g.spawn, g, function() tether.sleep(0.01); r.child1 = "ran" end)
            r.first_ok = ok
            -- the limit is reached: spawn has to wait, which is a checkpoint
            local ok2, e2 = pcall(g.spawn, g, function() r.child2 = "ran" end)
            r.second_ok, r.second_cancelled = ok2, is_cancelled(e2)
          end)
        end)
        return r
      end)
      assert.is_true(r.first_ok)
      assert.equal("ran", r.child1)
      assert.is_false(r.second_ok)
      assert.is_true(r.second_cancelled)
      assert.is_nil(r.child2)
    end)
  end)

  describe("Cancelled", function()
    it("is not a tether.Error", function()
      local is_err, is_canc = tether.run(function()
        local e
        local scope = tether.cancel_scope({})
        scope:run(function()
          scope:cancel()
          local _
          _, e = pcall(tether.checkpoint)
          error(e)
        end)
        return tether.Error:is(e), tether.Cancelled:is(e)
      end)
      assert.is_false(is_err)
      assert.is_true(is_canc)
    end)
  end)
end)
