-- W10 floor: the producer resumes the consumer coroutine with each value, and
-- the consumer yields back (two coroutine switches per value, no queue, no
-- checks). The capacity is ignored: nothing is ever buffered.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local N = C.n()
local CAP = C.capacity()

local count, sum = 0, 0
local consumer = coroutine.wrap(function(v)
  while v do
    count = count + 1; sum = sum + v
    v = coroutine.yield()
  end
end)
local t0 = C.clock()
for i = 1, N do consumer(i) end
local t1 = C.clock()
C.check(count == N and sum == N * (N + 1) // 2, "wrong sum")
C.result(C.w10_name(CAP), "floor-coroutine", N, N / (t1 - t0), "values_per_s")
