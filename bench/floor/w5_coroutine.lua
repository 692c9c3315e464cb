-- Floor for W5: N raw coroutines suspended at a yield (kept in an array).
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local N = C.n()

local parked = 0
local function body()
  parked = parked + 1
  coroutine.yield()
end

C.fullgc()
local before = C.rss()
local cos = {}
for i = 1, N do
  local co = coroutine.create(body)
  coroutine.resume(co)
  cos[i] = co
end
C.fullgc()
local after = C.rss()

C.check(parked == N, ("parked=%d, expected %d"):format(parked, N))
C.result("w5", "floor-coroutine", N, (after - before) / N, "bytes_per_task")
