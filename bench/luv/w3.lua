-- W3 cancel, hand-written coroutines over luv.
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

local BOOM = setmetatable({}, { __tostring = function() return "boom" end })
local t_raise, t_caught, err
S.run(function()
  local ok, e = pcall(S.with_group, function(g)
    for _ = 1, N do g:spawn(sleeper) end
    g:spawn(function()
      while parked < N do S.sleep(0) end
      t_raise = C.clock()
      error(BOOM)
    end)
  end)
  t_caught = C.clock()
  C.check(not ok, "with_group did not raise")
  err = e
end)

C.check(err == BOOM, "with_group raised something else: " .. tostring(err))
C.check(parked == N, ("parked=%d, expected %d"):format(parked, N))
C.check(cleaned == N, ("cleaned=%d, expected %d"):format(cleaned, N))
C.result("w3", "luv", N, t_caught - t_raise, "s")
