-- W2 timers, hand-written coroutines over luv.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local S = dofile((arg[0]:match("^(.*)/") or ".") .. "/mini.lua")
local N = C.n()
local delays = C.delays(N)
local clock, tol = C.clock, C.W2_TOLERANCE

local done, early = 0, 0
local wall
S.run(function()
  local t0 = clock()
  S.with_group(function(g)
    for i = 1, N do
      local d = delays[i] / 1000
      g:spawn(function()
        local start = clock()
        S.sleep(d)
        if clock() - start < d - tol then early = early + 1 end
        done = done + 1
      end)
    end
  end)
  wall = clock() - t0
end)

C.check(done == N, ("done=%d, expected %d"):format(done, N))
C.check(early == 0, ("%d sleeps woke before their delay"):format(early))
C.check(wall >= 0.050, "wall time below the 50 ms maximum delay")
C.result("w2", "luv", N, wall - 0.050, "s")
