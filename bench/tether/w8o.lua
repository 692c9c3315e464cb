-- W8 overhead with tether: N calls of tether.thread.run of a trivial function,
-- one after the other (each waits for the previous): time per call.
local here = (arg[0]:match("^(.*)/") or ".")
local C = dofile(here .. "/../lib/common.lua")
local tether = require("tether")
local N = C.n()

local function trivial(x) return x + 1 end

local elapsed, sum = nil, 0
tether.run(function()
  local run = tether.thread.run
  for i = 1, 10 do run(trivial, i) end          -- the worker states exist
  local t0 = C.clock()
  for i = 1, N do sum = sum + run(trivial, i) end
  elapsed = C.clock() - t0
end)

C.check(sum == N * (N + 1) // 2 + N, ("sum=%d"):format(sum))
C.result("w8o", "tether", N, elapsed / N * 1e9, "ns_per_call")
