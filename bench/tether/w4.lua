-- W4 TCP echo with tether: tcp.serve (a task per connection) and C client
-- tasks in one process on 127.0.0.1; each client does R round trips of a
-- 64-byte message (write, read_exactly(64), compare every byte).
-- usage: w4.lua C [R]   -> round trips per second
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local tether = require("tether")
local NC = C.n()
local R = math.tointeger(tonumber(arg[2] or "1000"))

local function echo(s)
  while true do
    local d = s:read()
    if not d then return end
    s:write(d)
  end
end

local ok_rt = 0
local function client(i, port)
  local msg = ("client %06d "):format(i) .. ("x"):rep(50)
  local c <close> = tether.tcp.connect("127.0.0.1", port)
  for _ = 1, R do
    c:write(msg)
    local got = c:read_exactly(64)
    if got ~= msg then C.fail(("client %d: echo mismatch"):format(i)) end
    ok_rt = ok_rt + 1
  end
end

local t0, t1
tether.run(function()
  tether.with_group(function(g)
    local l = g:start(tether.tcp.serve, echo, 0, { backlog = 4096 })
    t0 = C.clock()
    tether.with_group(function(cg)
      for i = 1, NC do cg:spawn(client, i, l.port) end
    end)
    t1 = C.clock()
    g:cancel()
  end)
end)

C.check(ok_rt == NC * R, ("round trips: %d, expected %d"):format(ok_rt, NC * R))
C.result("w4", "tether", NC, ok_rt / (t1 - t0), "rt_per_s")
