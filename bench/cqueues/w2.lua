-- W2 timers with cqueues: cq:wrap each task, cqueues.sleep(delay), cq:loop().
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local cqueues = require("cqueues")
local N = C.n()
local delays = C.delays(N)
local clock, tol = C.clock, C.W2_TOLERANCE

local done, early = 0, 0
local t0 = clock()
local cq = cqueues.new()
for i = 1, N do
  local d = delays[i] / 1000
  cq:wrap(function()
    local start = clock()
    cqueues.sleep(d)
    if clock() - start < d - tol then early = early + 1 end
    done = done + 1
  end)
end
local ok, err = cq:loop()
local wall = clock() - t0

C.check(ok, "cq:loop failed: " .. tostring(err))
C.check(done == N, ("done=%d, expected %d"):format(done, N))
C.check(early == 0, ("%d sleeps woke before their delay"):format(early))
C.check(wall >= 0.050, "wall time below the 50 ms maximum delay")
C.result("w2", "cqueues", N, wall - 0.050, "s")
