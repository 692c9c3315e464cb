-- A second W1 floor, for information: coroutine.create + resume + resume one
-- coroutine at a time (only one alive, so its memory is reused at once). The
-- difference to floor/w1_coroutine.lua (N alive at once, as in W1) is the cost
-- of fresh memory: page faults and cache misses.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local N = C.n()

local done = 0
local function body()
  coroutine.yield()
  done = done + 1
end

local create, resume = coroutine.create, coroutine.resume
local t0 = C.clock()
for _ = 1, N do
  local co = create(body)
  resume(co)
  resume(co)
end
local t1 = C.clock()

C.check(done == N, ("done=%d, expected %d"):format(done, N))
C.result("w1", "floor-coroutine-1by1", N, (t1 - t0) / N * 1e9, "ns_per_task")
