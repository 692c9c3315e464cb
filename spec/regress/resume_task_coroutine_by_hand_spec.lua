-- Regression: coroutine.resume on another task's coroutine (kept from
-- coroutine.running()) cut that task's sleep short and ran it inside the
-- caller. Now the caller gets a clear error and the task goes on waiting as
-- if nothing had happened.
local tether = require("tether")

describe("resuming a task's coroutine by hand", function()
  it("raises in the caller and leaves the task blocked exactly as before", function()
    local co, slept, resumed_at, woke = nil, nil, nil, nil
    local r1, r2, status
    tether.run(function()
      tether.with_group(function(g)
        g:spawn({ name = "sleeper" }, function()
          co = coroutine.running()
          local t0 = tether.now()
          woke = table.pack(tether.sleep(0.05))
          slept = tether.now() - t0
        end)
        g:spawn(function()
          tether.sleep(0.005)
          resumed_at = tether.now()
          r1 = table.pack(pcall(coroutine.resume, co, "x", "y"))
          r2 = table.pack(pcall(function() return coroutine.resume(co) end))
          status = coroutine.status(co)
        end)
      end)
    end)
    assert.is_false(r1[1])
    assert.matches("task 'sleeper'", tostring(r1[2]), 1, true)
    assert.matches("cannot be resumed by hand", tostring(r1[2]), 1, true)
    assert.is_false(r2[1])
    assert.matches("resume_task_coroutine_by_hand_spec.lua:%d+: coroutine.resume", tostring(r2[2]))
    assert.are.equal("suspended", status)
    assert.are.equal(0, woke.n)            -- the sleep returned nothing: the resume's values were dropped
    assert.is_true(slept >= 0.05 - 1e-3)   -- and it was not cut short
  end)

  it("an unprotected resume by hand fails the resuming task, not the resumed one", function()
    local co, sleeper, err
    tether.run(function()
      local ok, e = pcall(tether.with_group, function(g)
        sleeper = g:spawn(function()
          co = coroutine.running()
          tether.sleep(0.02)
          return "slept"
        end)
        g:spawn({ name = "meddler" }, function()
          tether.checkpoint()
          coroutine.resume(co)
        end)
      end)
      err = not ok and e
    end)
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal(1, err.errors.n)
    assert.are.equal("meddler", err:info(1).task)
    assert.is_true(sleeper:cancelled() or sleeper:result() == "slept")
    assert.is_false(sleeper:failed())
  end)

  it("a task waiting at a checkpoint, in t:wait or in a group join is protected too", function()
    local cos, errs = {}, {}
    tether.run(function()
      tether.with_group(function(g)
        local long = g:spawn(function() cos.join = coroutine.running(); tether.sleep(0.02) end)
        g:spawn(function() cos.wait = coroutine.running(); long:wait() end)
        g:spawn(function()
          cos.group = coroutine.running()
          tether.with_group(function(inner) inner:spawn(tether.sleep, 0.02) end)
        end)
        g:spawn(function()
          tether.sleep(0.005)
          for k, co in pairs(cos) do errs[k] = select(2, pcall(coroutine.resume, co)) end
        end)
      end)
    end)
    for _, k in ipairs({ "join", "wait", "group" }) do
      assert.matches("cannot be resumed by hand", tostring(errs[k]), 1, true)
    end
  end)
end)
