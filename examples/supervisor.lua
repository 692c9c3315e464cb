-- supervisor.lua: policy "supervisor", daemons and g:start.
--
--   lua5.4 examples/supervisor.lua

local tether = require("tether")

-- A worker that fails on item 3 and finishes the others.
local function worker(id)
  tether.sleep(0.02 * id)
  if id == 3 then error("worker 3: bad input", 0) end
  print("worker " .. id .. " done")
end

tether.run(function()
  -- In a supervisor group a failure does not cancel the siblings: every other
  -- worker finishes, and the errors are raised together at the end.
  local ok, eg = pcall(tether.with_group, { name = "workers", policy = "supervisor" },
    function(g)
      -- A daemon serves the main work and is cancelled (without an error) once
      -- the body and every non-daemon task have finished.
      g:spawn({ name = "progress", daemon = true }, function()
        local ok2, e = pcall(function()
          while true do tether.sleep(0.03); print("  ... still working") end
        end)
        print("progress daemon stopped: " .. e.reason)
        error(e, 0)
      end)

      -- g:start: wait until the child says it is ready, and get a value back.
      local queue = g:start({ name = "queue" }, function(started)
        tether.sleep(0.01)            -- pretend to open something
        started("queue#1")
        tether.sleep(0.05)            -- then keep running in the group
      end)
      print("queue ready: " .. queue)

      for id = 1, 5 do
        g:spawn({ name = "worker " .. id }, worker, id)
      end
    end)
  print(string.format("%s: %d error(s), first from task '%s': %s",
    eg.message, eg.errors.n, eg:info(1).task, eg.errors[1]))
end)
