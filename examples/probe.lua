-- probe.lua: check many host:port pairs at once, each with its own deadline.
--
--   lua5.4 examples/probe.lua 127.0.0.1:22 localhost:80 example.invalid:443
--
-- Every probe runs in its own task (tether.gather: one failure cancels
-- nothing).  A probe resolves the name and connects the way RFC 8305 says
-- (tether.tcp.connect tries the addresses in turn, 0.25 s apart); it gives
-- up after 2 s with move_on_after, and a cancelled connect leaves no socket.

local tether = require("tether")

local targets = {}
for i = 1, #arg do
  local host, port = arg[i]:match("^%[?([^%]]+)%]?:(%d+)$")
  if host then targets[#targets + 1] = { host = host, port = tonumber(port) } end
end
if #targets == 0 then
  io.stderr:write("usage: lua5.4 examples/probe.lua HOST:PORT ...\n")
  os.exit(2)
end

tether.run(function()
  local fns = {}
  for i, t in ipairs(targets) do
    fns[i] = function()
      local t0 = tether.now()
      local done, c = tether.move_on_after(2, tether.tcp.connect, t.host, t.port)
      if not done then return "timeout", tether.now() - t0 end
      local addr, port = c:getpeername()
      c:close()
      return ("open (%s:%d)"):format(addr, port), tether.now() - t0
    end
  end
  for i, r in ipairs(tether.gather(fns)) do
    local t = targets[i]
    local what, secs
    if r.ok then
      what, secs = r[1], r[2]
    else
      local e = r.error
      what = tether.IOError:is(e) and (e.code or "error") or tostring(e)
      secs = 0
    end
    print(("%-28s %-32s %6.1f ms"):format(t.host .. ":" .. t.port, what, secs * 1000))
  end
end)
