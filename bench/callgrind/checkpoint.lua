-- one op = tether.checkpoint() in a single task (a full scheduler round trip)
local tether = require("tether")
local N = tonumber(arg[1])
tether.run(function()
  local checkpoint = tether.checkpoint
  for _ = 1, N do checkpoint() end
end)
