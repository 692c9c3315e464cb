-- http_get.lua: fetch a URL over plain HTTP/1.1 with tether.tcp.connect and the stream readers.
--
--   lua5.4 examples/http_get.lua http://127.0.0.1:8000/README.md
--
-- Prints the status line, then the body.  Exits 1 on a network error or a
-- timeout (10 s for the whole request), with the error on stderr.

local tether = require("tether")

local url = arg[1] or "http://127.0.0.1:8000/"
local host, port, path = url:match("^http://([^/:]+):?(%d*)(/?.*)$")
if not host then
  io.stderr:write("usage: lua5.4 examples/http_get.lua http://HOST[:PORT]/PATH\n")
  os.exit(2)
end
port = tonumber(port) or 80
if path == "" then path = "/" end

local function get()
  local c <close> = tether.tcp.connect(host, port)
  c:write("GET ", path, " HTTP/1.1\r\n",
          "Host: ", host, "\r\n",
          "User-Agent: tether-example\r\n",
          "Connection: close\r\n\r\n")
  local status = c:read_line()
  if not status then error("the server closed the connection without answering") end
  local headers = {}
  for line in c:lines() do                  -- headers, up to the empty line
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  local body
  if headers["content-length"] then
    local n = tonumber(headers["content-length"])
    body = n > 0 and c:read_exactly(n) or ""
  else
    body = c:read_all({ max = 64 * 1024 * 1024 })
  end
  return status, headers, body
end

local ok, err = pcall(tether.run, function()
  local status, headers, body = tether.fail_after(10, get)
  print(status)
  print(("(%s, %d bytes)"):format(headers["content-type"] or "no type", #body))
  io.write(body)
end)
if not ok then
  io.stderr:write("http_get: ", tostring(err), "\n")
  os.exit(1)
end
