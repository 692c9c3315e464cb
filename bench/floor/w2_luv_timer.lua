-- Floor for W2: N raw luv timers with the shared delays, callbacks only.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local uv = require("luv")
local N = C.n()
local delays = C.delays(N)
local clock, tol = C.clock, C.W2_TOLERANCE

local done, early = 0, 0
local t0 = clock()
for i = 1, N do
  local d = delays[i]
  local start = clock()
  local t = uv.new_timer()
  uv.update_time()     -- the loop clock is cached: without this, timers fire early
  t:start(d, 0, function()
    if clock() - start < d / 1000 - tol then early = early + 1 end
    done = done + 1
    t:close()
  end)
end
uv.run()
local wall = clock() - t0

C.check(done == N, ("done=%d, expected %d"):format(done, N))
C.check(early == 0, ("%d timers fired before their delay"):format(early))
C.check(wall >= 0.050, "wall time below the 50 ms maximum delay")
C.result("w2", "floor-luv-timer", N, wall - 0.050, "s")
