-- W8 thread offload, hand-written luv: one uv.new_work, N work:queue calls,
-- results collected in the after-work callback (luv's pool: every thread).
local here = (arg[0]:match("^(.*)/") or ".")
local C = dofile(here .. "/../lib/common.lua")
local P = dofile(here .. "/../lib/pool.lua")
local uv = require("luv")
local N = C.n()

local res, left = {}, N
local work = uv.new_work(function(i, n)
  local s = 0
  for k = 1, n do s = (s + k * k) % 1000003 end
  return i, s
end, function(i, s)
  -- NOTE: luv hands numbers between states as floats
  i, s = math.tointeger(i), math.tointeger(s)
  res[i] = s
  left = left - 1
end)

local t0 = C.clock()
for i = 1, N do work:queue(i, P.W8_ITERS + i) end
uv.run()
local elapsed = C.clock() - t0

C.check(left == 0, ("%d jobs did not finish"):format(left))
P.w8_check(C, res, N)
C.result("w8", "luv", N, elapsed * 1e3, "ms")
