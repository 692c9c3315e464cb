-- W4 TCP echo with cqueues: a listening socket, cq:wrap per connection and per
-- client, sock:read(64) / sock:write + flush, in one cq:loop().
-- usage: w4.lua C [R]   -> round trips per second
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/../lib/common.lua")
local cqueues = require("cqueues")
local socket = require("cqueues.socket")
local NC = C.n()
local R = math.tointeger(tonumber(arg[2] or "1000"))

local cq = cqueues.new()
local srv = socket.listen({ host = "127.0.0.1", port = 0, nodelay = true, backlog = 4096 })
srv:listen()
local _, _, port = srv:localname()
local live = NC

cq:wrap(function()
  for s in srv:clients() do
    cq:wrap(function()
      s:setmode("b", "bn")
      while true do
        local d = s:read(-65536)
        if not d then break end
        s:write(d)
      end
      s:close()
    end)
    if live == 0 then break end
  end
end)

local ok_rt = 0
local function client(i)
  local msg = ("client %06d "):format(i) .. ("x"):rep(50)
  local c = socket.connect({ host = "127.0.0.1", port = port, nodelay = true })
  c:setmode("b", "bn")
  c:connect()
  for _ = 1, R do
    c:write(msg)
    local got = c:read(64)
    if got ~= msg then C.fail(("client %d: echo mismatch (%s)"):format(i, tostring(got))) end
    ok_rt = ok_rt + 1
  end
  c:close()
  live = live - 1
  if live == 0 then srv:close() end
end

local t0 = C.clock()
for i = 1, NC do cq:wrap(client, i) end
local ok, err = cq:loop()
local t1 = C.clock()
C.check(ok or ok_rt == NC * R, "cq:loop failed: " .. tostring(err))
C.check(ok_rt == NC * R, ("round trips: %d, expected %d"):format(ok_rt, NC * R))
C.result("w4", "cqueues", NC, ok_rt / (t1 - t0), "rt_per_s")
