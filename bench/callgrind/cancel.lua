-- one op = spawn a task that parks on a 1-hour sleep and is cancelled when a
-- sibling raises (cancel + unwind through a <close> handler), as in W3
local tether = require("tether")
local N = tonumber(arg[1])
local cleaned = 0
local cleanup = setmetatable({}, { __close = function() cleaned = cleaned + 1 end })
local function sleeper()
  local _ <close> = cleanup
  tether.sleep(3600)
end
tether.run(function()
  local ok = pcall(tether.with_group, function(g)
    for _ = 1, N do g:spawn(sleeper) end
    g:spawn(function() tether.sleep(0); error("boom") end)
  end)
  assert(not ok)
end)
assert(cleaned == N, "not every task unwound")
