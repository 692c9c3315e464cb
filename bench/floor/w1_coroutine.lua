-- Floor for W1: raw coroutine.create + resume + resume, no loop, no scheduler.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local N = C.n()

local done = 0
local function body()
  coroutine.yield()
  done = done + 1
end

local create, resume = coroutine.create, coroutine.resume
local cos = {}
local t0 = C.clock()
for i = 1, N do
  local co = create(body)
  resume(co)
  cos[i] = co
end
for i = 1, N do
  resume(cos[i])
end
local t1 = C.clock()

C.check(done == N, ("done=%d, expected %d"):format(done, N))
for i = 1, N do C.check(coroutine.status(cos[i]) == "dead", "coroutine not finished") end
C.result("w1", "floor-coroutine", N, (t1 - t0) / N * 1e9, "ns_per_task")
