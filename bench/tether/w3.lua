-- W3 cancel with tether: N tasks parked on a 1-hour sleep, one more raises;
-- time from the raise until with_group has raised its ErrorGroup with all N
-- cancelled (each counted by a <close> handler as it unwinds).
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local tether = require("tether")
local N = C.n()

local parked, cleaned = 0, 0
local cleanup = setmetatable({}, { __close = function() cleaned = cleaned + 1 end })
local all_parked = tether.Event()
local function sleeper()
  local _ <close> = cleanup
  parked = parked + 1
  if parked == N then all_parked:set() end
  tether.sleep(3600)
end

local BOOM = setmetatable({}, { __tostring = function() return "boom" end })
local t_raise, t_caught, err
tether.run(function()
  local ok, e = pcall(tether.with_group, function(g)
    for _ = 1, N do g:spawn(sleeper) end
    g:spawn(function()
      all_parked:wait()               -- the last sleeper set it, then parked
      t_raise = C.clock()
      error(BOOM)
    end)
  end)
  t_caught = C.clock()
  C.check(not ok, "with_group did not raise")
  err = e
end)

C.check(tether.ErrorGroup:is(err), "with_group raised something else: " .. tostring(err))
C.check(err.errors.n == 1 and err.errors[1] == BOOM,
  ("the ErrorGroup holds %s errors, expected just the one raised"):format(tostring(err.errors.n)))
C.check(parked == N, ("parked=%d, expected %d"):format(parked, N))
C.check(cleaned == N, ("cleaned=%d, expected %d"):format(cleaned, N))
C.result("w3", "tether", N, t_caught - t_raise, "s")
