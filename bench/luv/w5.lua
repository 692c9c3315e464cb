-- W5 memory, hand-written coroutines over luv: RSS per parked (cancellable) task.
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local S = dofile((arg[0]:match("^(.*)/") or ".") .. "/mini.lua")
local N = C.n()

local parked, cleaned = 0, 0
local cleanup = setmetatable({}, { __close = function() cleaned = cleaned + 1 end })
local function sleeper()
  local _ <close> = cleanup
  parked = parked + 1
  S.sleep(3600)
end

local STOP = setmetatable({}, { __tostring = function() return "stop" end })
local before, after
S.run(function()
  C.fullgc()
  before = C.rss()
  local ok, e = pcall(S.with_group, function(g)
    for _ = 1, N do g:spawn(sleeper) end
    g:spawn(function()
      while parked < N do S.sleep(0) end
      C.fullgc()
      after = C.rss()
      error(STOP)                    -- cancels the parked tasks
    end)
  end)
  C.check(not ok and e == STOP, "unexpected group result: " .. tostring(e))
end)

C.check(parked == N and cleaned == N, ("parked=%d cleaned=%d, expected %d"):format(parked, cleaned, N))
C.result("w5", "luv", N, (after - before) / N, "bytes_per_task")
