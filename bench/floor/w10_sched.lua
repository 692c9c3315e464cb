-- W10 floor with a scheduler: a loop resumes a producer and a consumer
-- coroutine in turn, each yields once per value (a value moves through a
-- variable): four coroutine switches per value, the least that a scheduler
-- with one resume site and a checkpoint in every send and receive can do.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local N = C.n()
local CAP = C.capacity()

local slot, count, sum = nil, 0, 0
local yield = coroutine.yield
local producer = coroutine.create(function()
  for i = 1, N do slot = i; yield() end
end)
local consumer = coroutine.create(function()
  while true do
    local v = slot
    if v == nil then return end
    slot = nil
    count = count + 1; sum = sum + v
    yield()
  end
end)
local resume, status = coroutine.resume, coroutine.status
local t0 = C.clock()
while true do
  resume(producer)
  if status(producer) == "dead" then break end
  resume(consumer)
end
local t1 = C.clock()
C.check(count == N and sum == N * (N + 1) // 2, ("wrong: %d values, sum %d"):format(count, sum))
C.result(C.w10_name(CAP), "floor-sched", N, N / (t1 - t0), "values_per_s")
