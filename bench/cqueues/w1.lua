-- W1 spawn-join with cqueues: cq:wrap each task, cqueues.sleep(0), cq:loop() joins.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local cqueues = require("cqueues")
local N = C.n()

local done = 0
local function task()
  cqueues.sleep(0)
  done = done + 1
end

local t0 = C.clock()
local cq = cqueues.new()
for _ = 1, N do cq:wrap(task) end
local ok, err = cq:loop()
local t1 = C.clock()

C.check(ok, "cq:loop failed: " .. tostring(err))
C.check(done == N, ("done=%d, expected %d"):format(done, N))
C.result("w1", "cqueues", N, (t1 - t0) / N * 1e9, "ns_per_task")
