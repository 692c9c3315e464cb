-- W10 channel throughput with tether: one producer sends 1..N through
-- tether.channel(capacity), one consumer sums them with `for v in recv`.
-- Figure: values per second, wall time from the first send to the last receive.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local tether = require("tether")
local N = C.n()
local CAP = C.capacity()

local count, sum, t0, t1 = 0, 0, 0, 0
tether.run(function()
  local send, recv = tether.channel(CAP)
  tether.with_group(function(g)
    g:spawn(function()
      for v in recv do count = count + 1; sum = sum + v end
      t1 = C.clock()
    end)
    g:spawn(function()
      t0 = C.clock()
      for i = 1, N do send:send(i) end
      send:close()
    end)
  end)
end)

C.check(count == N and sum == N * (N + 1) // 2, ("received %d values summing to %d, expected %d summing to %d")
  :format(count, sum, N, N * (N + 1) // 2))
C.result(C.w10_name(CAP), "tether", N, N / (t1 - t0), "values_per_s")
