-- luv_interop.lua: a luv program whose uv.run() drives tether tasks. They use
-- luv's timers and file system through tether.await, so every wait is a
-- checkpoint that a timeout or a failing sibling can cancel.
--   lua5.4 examples/luv_interop.lua
local uv = require("luv")
local tether = require("tether")

-- ---- luv's callback APIs as tether checkpoints ------------------------------

-- Sleeps on a luv timer.  On cancellation the timer is stopped: its callback
-- will not come, so the wait ends at once (cancel returns true).
local function uv_sleep(ms)
  local timer = uv.new_timer()
  local _ <close> = setmetatable({}, { __close = function() timer:close() end })
  tether.await(function(done) timer:start(ms, 0, done) end,
               function() timer:stop(); return true end)
end

-- Calls luv's fs function `name` with the arguments and a callback; returns
-- the result or raises the error.  On cancellation a request that has not
-- started is removed (uv.cancel succeeds: the wait ends at once); one that
-- runs cannot be stopped, so await waits for it and returns its result, and
-- the cancellation comes at the task's next checkpoint.
local function fs(name, ...)
  local args, req = table.pack(...), nil
  local err, value = tether.await(function(done)
    args[args.n + 1] = done
    req = uv[name](table.unpack(args, 1, args.n + 1))
  end, function()
    return uv.cancel(req) == 0
  end)
  if err then error(name .. ": " .. err, 0) end
  return value
end

-- ---- the program -----------------------------------------------------------

local path = os.tmpname()

local function main()
  local fd = fs("fs_open", path, "w", tonumber("644", 8))
  fs("fs_write", fd, "hello from luv\n", 0)
  fs("fs_close", fd)
  tether.with_group(function(g)
    g:spawn({ daemon = true }, function()  -- ticks until the main work is done
      local n = 0
      while true do
        uv_sleep(10)
        n = n + 1
        print("tick " .. n)
      end
    end)
    g:spawn(function()
      local rfd = fs("fs_open", path, "r", 0)
      local data = fs("fs_read", rfd, 100, 0)
      fs("fs_close", rfd)
      uv_sleep(25)
      print("read: " .. data:gsub("\n$", ""))
    end)
    g:spawn(function()
      local finished = tether.move_on_after(0.02, uv_sleep, 60000)
      print("a 60 s luv sleep under a 20 ms timeout finished: " .. tostring(finished))
    end)
  end)
  fs("fs_unlink", path)
  return "main's result"
end

local h = tether.launch(main)

-- Plain luv code runs beside the tasks, on the same loop.
local t = uv.new_timer()
t:start(15, 0, function()
  t:close()
  print("a plain luv timer fired")
end)

uv.run()                 -- returns once the tasks are done and luv has nothing left
print(h:result())        -- raises main's error, had it failed
print("all done")
