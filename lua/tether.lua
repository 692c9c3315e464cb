-- tether: structured concurrency for Lua 5.4 (a thin layer over the C core, tether.core)
local core = require("tether.core")

local tether = {}
for k, v in pairs(core) do tether[k] = v end

return tether
