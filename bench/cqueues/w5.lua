-- W5 memory with cqueues: RSS per parked (cancellable) task.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local G = dofile((arg[0]:match("^(.*)/") or ".") .. "/group.lua")
local N = C.n()

local parked, cleaned = 0, 0
local cleanup = setmetatable({}, { __close = function() cleaned = cleaned + 1 end })

local g = G.new()
C.fullgc()
local before = C.rss()
local after
local function sleeper()
  local _ <close> = cleanup
  parked = parked + 1
  g:sleep(3600)
end
local STOP = setmetatable({}, { __tostring = function() return "stop" end })
for _ = 1, N do g:spawn(sleeper) end
g:spawn(function()
  while parked < N do g:sleep(0) end
  C.fullgc()
  after = C.rss()
  error(STOP)                           -- cancels the parked tasks
end)
local ok, err = pcall(g.join, g)

C.check(not ok and err == STOP, "unexpected group result: " .. tostring(err))
C.check(parked == N and cleaned == N, ("parked=%d cleaned=%d, expected %d"):format(parked, cleaned, N))
C.result("w5", "cqueues", N, (after - before) / N, "bytes_per_task")
