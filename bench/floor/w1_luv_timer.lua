-- Floor for W1's "yield to the loop": a raw luv timer started at 0 with its
-- callback (no coroutine). One timer per task; the callback closes it.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local uv = require("luv")
local N = C.n()

local done = 0
local function cb(timer)
  done = done + 1
  timer:close()
end

local t0 = C.clock()
for _ = 1, N do
  local t = uv.new_timer()
  t:start(0, 0, function() cb(t) end)
end
uv.run()
local t1 = C.clock()

C.check(done == N, ("done=%d, expected %d"):format(done, N))
C.result("w1", "floor-luv-timer", N, (t1 - t0) / N * 1e9, "ns_per_task")
