-- tether: structured concurrency for Lua 5.4 (a thin layer over the C core, tether.core)
local core = require("tether.core")

local tether = {}
for k, v in pairs(core) do tether[k] = v end
setmetatable(tether, getmetatable(core))  -- tether.stdin/stdout/stderr, opened on first use

-- NOTE: Lua names a function in "bad argument" messages by searching
-- package.loaded for it. With the functions in both "tether" and
-- "tether.core" the pick would depend on hash order; leaving only a view in
-- package.loaded["tether.core"] makes every message say "tether.sleep".
package.loaded["tether.core"] = setmetatable({}, { __index = tether, __newindex = tether })

return tether
