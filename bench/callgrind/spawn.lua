-- one op = spawn a task that returns at once (start, finish, join share)
local tether = require("tether")
local N = tonumber(arg[1])
local function noop() end
tether.run(function()
  tether.with_group(function(g)
    for _ = 1, N do g:spawn(noop) end
  end)
end)
