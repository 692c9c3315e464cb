-- W7 processes with tether: N `true` processes, at most 8 at once, each run with
-- tether.process.run (stdout and stderr captured, exit status checked).
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local tether = require("tether")
local N = C.n()
local run = tether.process.run

local ok = 0
local function one()
  local r = run({ "true" })
  if r.exit_code == 0 and r.stdout == "" and r.stderr == "" then ok = ok + 1 end
end

local elapsed
tether.run(function()
  local t0 = C.clock()
  tether.with_group({ limit = 8 }, function(g)
    for _ = 1, N do g:spawn(one) end
  end)
  elapsed = C.clock() - t0
end)

C.check(ok == N, ("ok=%d, expected %d"):format(ok, N))
C.result("w7", "tether", N, N / elapsed, "processes_per_s")
