-- W8 floor: the same N jobs one after the other in the main Lua state (what
-- thread offload is measured against: its speedup is this time / its time).
local here = (arg[0]:match("^(.*)/") or ".")
local C = dofile(here .. "/../lib/common.lua")
local P = dofile(here .. "/../lib/pool.lua")
local N = C.n()

local res = {}
local t0 = C.clock()
for i = 1, N do res[i] = P.w8_job(P.W8_ITERS + i) end
local elapsed = C.clock() - t0

P.w8_check(C, res, N)
C.result("w8", "floor-serial", N, elapsed * 1e3, "ms")
