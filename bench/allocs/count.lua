-- bench/allocs/count.lua: allocations per operation, counted by the
-- allocation harness (build/alloc-harness, spec/alloc/harness.c: every new
-- block and every block that grows counts).  Each op runs at N = 1000 and
-- N = 11000 in one tether.run; (count(11000) - count(1000)) / 10000 is one op
-- without startup; the bytes are Lua's own count (collectgarbage "count",
-- the collector stopped: every byte allocated, none reclaimed).  Run: make alloc-harness && build/alloc-harness bench/allocs/count.lua
local tether = require("tether")
local BIG = 1 << 40

local ops = {}
ops.spawn = { "spawn a task that returns at once", function(n)
  local function noop() end
  tether.with_group(function(g) for _ = 1, n do g:spawn(noop) end end)
end }
ops.w1task = { "spawn a task that does sleep(0) once (a W1 task)", function(n)
  local sleep = tether.sleep
  local function task() sleep(0) end
  tether.with_group(function(g) for _ = 1, n do g:spawn(task) end end)
end }
ops.sleep = { "spawn a task that sleeps 1..50 ms (N timers pending)", function(n)
  local sleep = tether.sleep
  tether.with_group(function(g)
    for i = 1, n do g:spawn(sleep, (i % 50 + 1) / 1000) end
  end)
end }
ops.park = { "spawn a task parked on an Event, cancelled (W5)", function(n)
  local ev = tether.Event()
  tether.with_group(function(g)
    for _ = 1, n do g:spawn(function() ev:wait() end) end
    tether.sleep(0)
    g:cancel()
  end)
end }

local order = { "spawn", "w1task", "sleep", "park" }
local function count(f, n)
  collectgarbage(); collectgarbage()
  collectgarbage("stop")            -- the collector's own work is not counted
  local c, kb
  tether.run(function()
    kb = collectgarbage("count")
    alloc_fail_after(BIG)
    f(n)
    c = alloc_count()
    alloc_disarm()
    kb = collectgarbage("count") - kb
  end)
  collectgarbage("restart")
  return c, kb * 1024
end
local only = arg and arg[1]
print("| op | allocations per op | bytes per op |")
print("|---|---:|---:|")
for _, k in ipairs(order) do
  if not only or only == k then
    local d, f = ops[k][1], ops[k][2]
    local c1, b1 = count(f, 1000)
    local c2, b2 = count(f, 11000)
    print(("| %s: %s | %.2f | %.0f |"):format(k, d, (c2 - c1) / 10000, (b2 - b1) / 10000))
  end
end
