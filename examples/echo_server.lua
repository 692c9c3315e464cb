-- echo_server.lua: a line echo server with tether.tcp.serve; one task per connection.
--
--   lua5.4 examples/echo_server.lua [PORT [LIMIT]]
--   nc 127.0.0.1 PORT            (type lines; "quit" closes the connection)
--
-- Binds 127.0.0.1 (pass PORT 0 for any free port), handles at most LIMIT
-- connections at once (default 100; the others wait in the kernel's
-- backlog), and runs until Ctrl-C.  A client that sends nothing for 60 s is
-- dropped with move_on_after; a client that misbehaves (a line over 64 KiB)
-- gets an error line and is closed: the handler catches its own errors, so
-- that one bad client does not stop the server.

local tether = require("tether")

local port = tonumber(arg[1]) or 0
local limit = tonumber(arg[2]) or 100
local clients = 0

local function handle(s)
  local peer, pport = s:getpeername()
  clients = clients + 1
  print(("+ %s:%d (%d connected)"):format(peer, pport, clients))
  local ok, err = pcall(function()
    while true do
      local got, line = tether.move_on_after(60, s.read_line, s)
      if not got then s:write("idle for 60 s, bye\n") break end
      if line == nil or line == "quit" then break end
      s:write(line, "\n")
    end
  end)
  if not ok then
    if tether.Cancelled:is(err) then error(err) end   -- the server stops: pass it on
    pcall(s.write, s, "error: ", tostring(err), "\n")
  end
  clients = clients - 1
  print(("- %s:%d"):format(peer, pport))
end

local ok, err = pcall(tether.run, function()
  tether.with_group(function(g)
    local l = g:start(tether.tcp.serve, handle, port, { limit = limit })
    print(("echo server on %s port %d (limit %d); Ctrl-C stops it"):format(l.host, l.port, limit))
  end)
end)
if not ok and not tether.Interrupted:is(err) then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print("stopped")
