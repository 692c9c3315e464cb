-- W5 memory with tether: RSS per parked task (full GC before both readings).
-- The tasks park on one tether.Event (cancellable, no timer per task); the
-- last one to park sets a second Event that the body waits on.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local tether = require("tether")
local N = C.n()

local parked, cleaned = 0, 0
local cleanup = setmetatable({}, { __close = function() cleaned = cleaned + 1 end })
local never = tether.Event()          -- nobody sets it: the tasks wait until cancelled
local all_parked = tether.Event()
local function sleeper()
  local _ <close> = cleanup
  parked = parked + 1
  if parked == N then all_parked:set() end
  never:wait()
end

local before, after
tether.run(function()
  C.fullgc()
  before = C.rss()
  tether.with_group(function(g)
    for _ = 1, N do g:spawn(sleeper) end
    all_parked:wait()                  -- runs after the last task blocked in never:wait()
    C.fullgc()
    after = C.rss()
    g:cancel()                           -- cancels the parked tasks
  end)
end)

C.check(parked == N and cleaned == N and not never:is_set(),
  ("parked=%d cleaned=%d, expected %d"):format(parked, cleaned, N))
C.result("w5", "tether", N, (after - before) / N, "bytes_per_task")
