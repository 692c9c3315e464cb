-- W3 cancel with cqueues (group = condition variable + cancel flag, see group.lua).
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local G = dofile((arg[0]:match("^(.*)/") or ".") .. "/group.lua")
local N = C.n()

local g = G.new()
local parked, cleaned = 0, 0
local cleanup = setmetatable({}, { __close = function() cleaned = cleaned + 1 end })
local function sleeper()
  local _ <close> = cleanup
  parked = parked + 1
  g:sleep(3600)
end

local BOOM = setmetatable({}, { __tostring = function() return "boom" end })
local t_raise
for _ = 1, N do g:spawn(sleeper) end
g:spawn(function()
  while parked < N do g:sleep(0) end
  t_raise = C.clock()
  error(BOOM)
end)
local ok, err = pcall(g.join, g)
local t_caught = C.clock()

C.check(not ok and err == BOOM, "join raised something else: " .. tostring(err))
C.check(parked == N, ("parked=%d, expected %d"):format(parked, N))
C.check(cleaned == N, ("cleaned=%d, expected %d"):format(cleaned, N))
C.result("w3", "cqueues", N, t_caught - t_raise, "s")
