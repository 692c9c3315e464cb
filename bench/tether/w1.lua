-- W1 spawn-join with tether: one group, N tasks that each sleep(0) once, join.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local tether = require("tether")
local N = C.n()

local done = 0
local sleep = tether.sleep
local function task()
  sleep(0)
  done = done + 1
end

local elapsed
tether.run(function()
  local t0 = C.clock()
  tether.with_group(function(g)
    for _ = 1, N do g:spawn(task) end
  end)
  elapsed = C.clock() - t0
end)

C.check(done == N, ("done=%d, expected %d"):format(done, N))
C.result("w1", "tether", N, elapsed / N * 1e9, "ns_per_task")
