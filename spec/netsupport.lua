-- spec/netsupport.lua: helpers of the networking specs (tcp, udp, unix, dns): fd counts, a
-- port where connect blocks, a warm-up run.  Loaded like spec/support.lua.
local tether = require("tether")

local M = {}

-- The number of open file descriptors of this process.
function M.fdcount()
  local n = 0
  local p = io.popen("ls /proc/" .. M.pid() .. "/fd")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n - 1     -- the pipe of this popen
end

local pid
function M.pid()
  if not pid then
    local f = io.open("/proc/self/stat")
    pid = f:read("n")
    f:close()
  end
  return pid
end

-- Run once with every kind of network object, so that libuv's own
-- descriptors (the loop's, the thread pool's) exist before a count.
local warmed = false
function M.warm()
  if warmed then return end
  warmed = true
  tether.run(function()
    local l <close> = tether.tcp.listen(0)
    local c <close> = tether.tcp.connect("127.0.0.1", l.port)
    local a <close> = l:accept()
    local u <close> = tether.udp.open({ port = 0 })
    tether.dns.getaddrinfo("localhost")
  end)
  collectgarbage()
  collectgarbage()
end

-- Runs fn() (which calls tether.run) and checks that the fd count is the
-- same afterwards; returns fn's results.
function M.fd_checked(fn)
  M.warm()
  collectgarbage()
  local before = M.fdcount()
  local r = table.pack(fn())
  collectgarbage()
  collectgarbage()
  local after = M.fdcount()
  assert(after == before, ("file descriptors leaked: %d before, %d after"):format(before, after))
  return table.unpack(r, 1, r.n)
end

-- Inside a run: a listener whose queue is full, so that a connect to it
-- blocks (the kernel drops the SYN).  Returns the listener and a closer for
-- the connections that filled it.
function M.full_listener()
  local l = tether.tcp.listen(0, { backlog = 1 })
  local fill = {}
  for _ = 1, 64 do
    local ok, c = tether.move_on_after(0.3, tether.tcp.connect, "127.0.0.1", l.port)
    if not ok then
      return l, function()
        for _, f in ipairs(fill) do f:close() end
        l:close()
      end
    end
    fill[#fill + 1] = c
  end
  error("full_listener: the queue never filled")
end

-- Runs `cmd` in the background; returns its pid (stdout to `out`).
function M.spawn(cmd, out)
  local p = io.popen(("sh -c '%s >%s 2>&1 & echo $!'"):format(cmd:gsub("'", "'\\''"), out))
  local id = p:read("n")
  p:close()
  return id
end

return M
