-- W8 thread offload with tether: N CPU-bound jobs of ~10 ms through
-- tether.thread.run, all spawned at once (thread.limiter lets pool size - 1 run).
local here = (arg[0]:match("^(.*)/") or ".")
local C = dofile(here .. "/../lib/common.lua")
local P = dofile(here .. "/../lib/pool.lua")
local tether = require("tether")
local N = C.n()

local res, elapsed = {}, nil
tether.run(function()
  local t0 = C.clock()
  tether.with_group(function(g)
    for i = 1, N do
      g:spawn(function() res[i] = tether.thread.run(P.w8_job, P.W8_ITERS + i) end)
    end
  end)
  elapsed = C.clock() - t0
end)

P.w8_check(C, res, N)
C.result("w8", "tether", N, elapsed * 1e3, "ms")
