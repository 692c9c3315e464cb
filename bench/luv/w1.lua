-- W1 spawn-join, hand-written coroutines over luv.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local S = dofile((arg[0]:match("^(.*)/") or ".") .. "/mini.lua")
local N = C.n()

local done = 0
local function task()
  S.sleep(0)
  done = done + 1
end

local t0, t1
S.run(function()
  t0 = C.clock()
  S.with_group(function(g)
    for _ = 1, N do g:spawn(task) end
  end)
  t1 = C.clock()
end)

C.check(done == N, ("done=%d, expected %d"):format(done, N))
C.result("w1", "luv", N, (t1 - t0) / N * 1e9, "ns_per_task")
