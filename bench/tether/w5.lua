-- W5 memory with tether: RSS per parked task (full GC before both readings).
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local tether = require("tether")
local N = C.n()

local parked, cleaned = 0, 0
local cleanup = setmetatable({}, { __close = function() cleaned = cleaned + 1 end })
local function sleeper()
  local _ <close> = cleanup
  parked = parked + 1
  tether.sleep(3600)
end

local before, after
tether.run(function()
  C.fullgc()
  before = C.rss()
  tether.with_group(function(g)
    for _ = 1, N do g:spawn(sleeper) end
    while parked < N do tether.sleep(0) end
    C.fullgc()
    after = C.rss()
    g:cancel()                           -- cancels the parked tasks
  end)
end)

C.check(parked == N and cleaned == N, ("parked=%d cleaned=%d, expected %d"):format(parked, cleaned, N))
C.result("w5", "tether", N, (after - before) / N, "bytes_per_task")
