-- timeouts.lua: deadlines with move_on_after, fail_after, cancel_scope and shield.
--
--   lua5.4 examples/timeouts.lua

local tether = require("tether")

-- A pretend network call that takes `secs` seconds.
local function fetch(what, secs)
  tether.sleep(secs)
  return what .. " (" .. secs .. "s)"
end

tether.run(function()
  -- move_on_after: give up quietly. Returns true plus the results, or false.
  print("move_on_after:", tether.move_on_after(0.10, fetch, "fast", 0.02))
  print("move_on_after:", tether.move_on_after(0.10, fetch, "slow", 5))

  -- fail_after: give up loudly, with a tether.TimeoutError.
  local ok, err = pcall(tether.fail_after, 0.10, fetch, "slow", 5)
  print("fail_after:   ", ok, tostring(err), tether.TimeoutError:is(err))

  -- Level-triggered: once the deadline passed, every checkpoint in the scope
  -- raises Cancelled again, so a pcall cannot keep the code running past it.
  local attempts = 0
  tether.move_on_after(0.10, function()
    while true do
      attempts = attempts + 1
      local ok2, e = pcall(tether.sleep, 1)
      print(string.format("  attempt %d: %s", attempts, ok2 and "ok" or tostring(e)))
      if attempts == 3 then break end
    end
    tether.checkpoint()           -- still inside the scope: raises again
    print("not reached")
  end)
  print("left the scope after", attempts, "attempts")

  -- A scope object: cancel it from another task, or move its deadline.
  local scope = tether.cancel_scope{ timeout = 10 }
  tether.with_group(function(g)
    g:spawn(function()
      tether.sleep(0.05)
      scope.deadline = tether.now() + 0.05   -- pull the deadline in
    end)
    print("scope:run:    ", scope:run(fetch, "report", 5))
  end)
  print("cancel_called:", scope.cancel_called, "cancelled_caught:", scope.cancelled_caught)

  -- shield: cleanup that must finish even though its scope is cancelled.
  tether.move_on_after(0.05, function()
    local ok3, e = pcall(tether.sleep, 1)     -- cancelled by the deadline
    print("cancelled:", not ok3 and tostring(e))
    tether.shield(function()
      tether.sleep(0.05)                      -- blocking cleanup still runs
      print("shielded cleanup finished")
    end)
  end)
end)
