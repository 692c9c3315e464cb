-- bench/lib/common.lua: helpers shared by every Lua benchmark script
-- (tether, hand-written luv, cqueues, floors). Loaded with dofile so that it
-- does not depend on LUA_PATH.
local M = {}

local uv = require("luv")           -- only for uv.hrtime(): a monotonic ns clock
local hrtime = uv.hrtime

-- monotonic seconds (float), high resolution, not cached by any loop
function M.clock() return hrtime() * 1e-9 end

-- resident set size of this process in bytes (VmRSS from /proc/self/status)
function M.rss()
  local f = assert(io.open("/proc/self/status", "r"))
  for line in f:lines() do
    local kb = line:match("^VmRSS:%s*(%d+)%s*kB")
    if kb then f:close(); return tonumber(kb) * 1024 end
  end
  f:close()
  error("VmRSS not found")
end

function M.fullgc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- N from the command line (default 100000)
function M.n()
  local n = tonumber(arg[1] or "100000")
  if not n or n < 1 or n ~= math.floor(n) then M.fail("bad N: " .. tostring(arg[1])) end
  return math.tointeger(n)
end

-- W10: the channel capacity from the command line (arg[2]: an integer >= 0)
function M.capacity()
  local c = math.tointeger(tonumber(arg[2] or ""))
  if not c or c < 0 then M.fail("W10 needs the capacity as second argument, got " .. tostring(arg[2])) end
  return c
end

-- W10's workload name for a capacity: w10_0, w10_100
function M.w10_name(cap) return "w10_" .. cap end

-- the shared W2 delay list (integer milliseconds, one per line); path = arg[2]
function M.delays(n)
  local path = arg[2] or M.fail("W2 needs the delay file as second argument")
  local f = assert(io.open(path, "r"))
  local d = {}
  for line in f:lines() do
    d[#d + 1] = math.tointeger(tonumber(line))
    if #d == n then break end
  end
  f:close()
  if #d ~= n then M.fail(("delay file %s has %d entries, need %d"):format(path, #d, n)) end
  return d
end

function M.result(work, system, n, value, unit)
  io.stdout:write(("RESULT %s %s n=%d value=%.6g unit=%s\n"):format(work, system, n, value, unit))
  io.stdout:flush()
end

function M.fail(msg)
  io.stderr:write("FAIL: " .. tostring(msg) .. "\n")
  io.stderr:flush()
  os.exit(1)
end

function M.check(cond, msg)
  if not cond then M.fail(msg) end
end

-- W2 tolerance: libuv's loop clock has millisecond granularity and is cached
-- at the start of a loop iteration, so a timer can fire up to 1 ms before
-- `delay` has elapsed on a high-resolution clock. The same tolerance is applied
-- to every system (Lua, Python, Node).
M.W2_TOLERANCE = 0.001

return M
