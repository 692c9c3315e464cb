-- .ci/smoke.lua: checks the rock that `luarocks make` installed (run by .ci/run
-- with package.path/cpath pointing only at that rock tree).
local tether = require("tether")

local a, b = tether.run(function(x)
  local t1, t2
  tether.with_group(function(g)
    t1 = g:spawn(function() tether.sleep(0.02); return "one" end)
    t2 = g:spawn(function(y) tether.sleep(0.01); return y * 2 end, x)
  end)
  return t1:result(), t2:result()
end, 21)
assert(a == "one" and b == 42, ("smoke: tether.run returned %s, %s"):format(tostring(a), tostring(b)))

local s = tether.stats()
assert(s.tasks == 0 and s.handles == 0 and s.timers == 0 and s.running == false,
       "smoke: tether.stats() is not idle after tether.run")
print("smoke: ok, tether.core from " .. package.searchpath("tether.core", package.cpath))
