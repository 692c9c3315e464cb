-- spec/netsupport.lua: helpers of the networking specs (tcp, udp, unix, dns): fd counts, a
-- port where connect blocks, a warm-up run.  Loaded like spec/support.lua.
local tether = require("tether")

local M = {}

-- Helper commands run without LD_PRELOAD: under `make check` it puts ASan
-- into every child, and LeakSanitizer would report tools like ls or bash.
local NOPRELOAD = "env -u LD_PRELOAD "

-- os.execute(cmd) without the preload; true when it exited 0.
function M.sh(cmd)
  return os.execute(NOPRELOAD .. "sh -c '" .. cmd:gsub("'", "'\\''") .. "'") == true
end

-- The output of cmd (without the preload).
function M.read(cmd)
  local p = io.popen(NOPRELOAD .. "sh -c '" .. cmd:gsub("'", "'\\''") .. "'")
  local out = p:read("a")
  p:close()
  return out
end

-- Under valgrind or ASan everything is many times slower: timing bounds
-- that only hold on a normal build are skipped.
local preload = os.getenv("LD_PRELOAD") or ""
M.slow = preload:find("vgpreload", 1, true) ~= nil or preload:find("asan", 1, true) ~= nil
  or os.getenv("TETHER_BUILD") == "build-asan"

-- Debian's python3 (the one the Makefile installs), else whatever is on PATH.
M.PYTHON = io.open("/usr/bin/python3") and "/usr/bin/python3" or "python3"

-- The open file descriptors of this process: count, and { [fd] = target }.
-- NOTE: listed by a child writing to a file (os.execute), not through a
-- popen pipe, whose two ends may both be open in this process for a moment.
local listing = os.tmpname()
function M.fds()
  local n, t = 0, {}
  M.sh("ls -l /proc/" .. M.pid() .. "/fd > " .. listing .. " 2>/dev/null")
  local f = assert(io.open(listing))
  for line in f:lines() do
    local fd, target = line:match("(%d+) %-> (.*)$")
    if fd and target ~= listing then
      n = n + 1
      t[tonumber(fd)] = target
    end
  end
  f:close()
  os.remove(listing)
  return n, t
end

function M.fdcount()
  return (M.fds())
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

-- "localhost" when this machine resolves it without a network (an /etc/hosts
-- entry: a minimal chroot may have none), else nil: cases that test name
-- resolution itself are pending without it.
function M.localname()
  local f = io.open("/etc/hosts")
  local hosts = f and f:read("a") or ""
  if f then f:close() end
  for line in hosts:gmatch("[^\n]+") do
    local l = line:gsub("#.*", "")
    if l:match("%slocalhost%f[%s%z]") or l:match("%slocalhost$") then return "localhost" end
  end
  return nil
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
    tether.dns.getaddrinfo("127.0.0.1")
  end)
  collectgarbage()
  collectgarbage()
end

-- Runs fn() (which calls tether.run) and checks that the fd count is the
-- same afterwards; returns fn's results.
function M.fd_checked(fn)
  M.warm()
  collectgarbage()
  local before, bt = M.fds()
  local r = table.pack(fn())
  collectgarbage()
  collectgarbage()
  local after, at = M.fds()
  if after ~= before then
    local d = {}
    for fd, tg in pairs(at) do if bt[fd] ~= tg then d[#d + 1] = "+" .. fd .. " " .. tg end end
    for fd, tg in pairs(bt) do if at[fd] ~= tg then d[#d + 1] = "-" .. fd .. " " .. tg end end
    error(("file descriptors leaked: %d before, %d after: %s"):format(before, after, table.concat(d, ", ")), 2)
  end
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
  local p = io.popen((NOPRELOAD .. "sh -c '%s >%s 2>&1 & echo $!'"):format((cmd:gsub("'", "'\\''")), out))
  local id = p:read("n")
  p:close()
  return id
end

return M
