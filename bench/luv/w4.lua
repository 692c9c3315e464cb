-- W4 TCP echo, hand-written over luv: the server is plain callbacks (read_start
-- -> write back), each client is a coroutine whose connect/write/read resume it
-- from luv callbacks: what a Lua programmer writes today without a library.
-- usage: w4.lua C [R]   -> round trips per second
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local uv = require("luv")
local NC = C.n()
local R = math.tointeger(tonumber(arg[2] or "1000"))

-- server: echo whatever arrives
local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
assert(server:listen(4096, function(err)
  assert(not err, err)
  local s = uv.new_tcp()
  server:accept(s)
  s:nodelay(true)
  s:read_start(function(rerr, data)
    if rerr or not data then s:close() return end
    s:write(data)
  end)
end))
local port = server:getsockname().port

-- a client coroutine: a small buffer, read_exactly(n) by yielding until it has n
local ok_rt, live = 0, NC
local function client(i)
  local co = coroutine.running()
  local msg = ("client %06d "):format(i) .. ("x"):rep(50)
  local c = uv.new_tcp()
  c:connect("127.0.0.1", port, function(err) assert(not err, err); coroutine.resume(co) end)
  coroutine.yield()
  c:nodelay(true)
  local buf, want = "", 0
  c:read_start(function(err, data)
    assert(not err, err)
    buf = buf .. (data or "")
    if want > 0 and #buf >= want then coroutine.resume(co) end
  end)
  for _ = 1, R do
    c:write(msg)
    if #buf < 64 then want = 64; coroutine.yield(); want = 0 end
    local got = buf:sub(1, 64)
    buf = buf:sub(65)
    if got ~= msg then C.fail(("client %d: echo mismatch"):format(i)) end
    ok_rt = ok_rt + 1
  end
  c:close()
  live = live - 1
  if live == 0 then server:close() end
end

local t0 = C.clock()
for i = 1, NC do coroutine.wrap(client)(i) end
uv.run()
local t1 = C.clock()
C.check(ok_rt == NC * R, ("round trips: %d, expected %d"):format(ok_rt, NC * R))
C.result("w4", "luv", NC, ok_rt / (t1 - t0), "rt_per_s")
