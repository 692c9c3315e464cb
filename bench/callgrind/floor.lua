-- one op = raw coroutine.create + resume + resume (N alive at once), no tether
local N = tonumber(arg[1])
local function body() coroutine.yield() end
local cos = {}
for i = 1, N do local co = coroutine.create(body); coroutine.resume(co); cos[i] = co end
for i = 1, N do coroutine.resume(cos[i]) end
