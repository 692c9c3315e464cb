-- W10 channel throughput, hand-written coroutines over luv: one producer puts
-- 1..N into a hand-written queue (queue.lua), one consumer sums them.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local S = dofile((arg[0]:match("^(.*)/") or ".") .. "/mini.lua")
local Q = dofile((arg[0]:match("^(.*)/") or ".") .. "/queue.lua")(S)
local N = C.n()
local CAP = C.capacity()

local count, sum, t0, t1 = 0, 0, 0, 0
S.run(function()
  local q = Q.new(CAP)
  S.with_group(function(g)
    g:spawn(function()
      while true do
        local v = q:get()
        if v == nil then break end
        count = count + 1; sum = sum + v
      end
      t1 = C.clock()
    end)
    g:spawn(function()
      t0 = C.clock()
      for i = 1, N do q:put(i) end
      q:close()
    end)
  end)
end)

C.check(count == N and sum == N * (N + 1) // 2, ("received %d values summing to %d, expected %d summing to %d")
  :format(count, sum, N, N * (N + 1) // 2))
C.result(C.w10_name(CAP), "luv", N, N / (t1 - t0), "values_per_s")
