-- spec/pool_support.lua: helpers for the specs of tether.fs and tether.thread (not a spec):
-- temporary directories, FIFOs that hold libuv's pool threads, the process's fd count.
--
--   local pool = require("pool_support")   -- with spec/ on package.path
local tether = require("tether")
local fs = tether.fs

local M = {}

local lfs = require("lfs")        -- busted depends on it

-- The number of open file descriptors of this process.
function M.fd_count()
  collectgarbage()
  collectgarbage()               -- Lua files nobody closed
  local n = 0
  for name in lfs.dir("/proc/self/fd") do
    if name ~= "." and name ~= ".." then n = n + 1 end
  end
  return n - 1                   -- the directory being listed
end

-- Is `path` open in this process?
function M.is_open(path)
  for name in lfs.dir("/proc/self/fd") do
    if name ~= "." and name ~= ".." then
      local target = lfs.symlinkattributes("/proc/self/fd/" .. name, "target")
      if target == path then return true end
    end
  end
  return false
end

-- A temporary directory for `fn(dir)`, made and removed with plain Lua (so
-- that tests of tether.fs do not depend on it), removed even when fn raises.
function M.with_dir(fn)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local ok, err = pcall(fn, dir)
  os.execute("rm -rf '" .. dir .. "'")
  if not ok then error(err, 0) end
end

function M.mkfifo(path)
  assert(os.execute("mkfifo '" .. path .. "'"), "mkfifo " .. path)
  return path
end

-- Waits (checkpoints, then short sleeps) until pred() holds; fails after `limit` s.
function M.wait_for(pred, limit, what)
  local t0 = tether.now()
  while not pred() do
    if tether.now() - t0 > (limit or 10) then error("timed out waiting for " .. (what or "a condition"), 2) end
    tether.sleep(0.005)
  end
end

-- Opens `path` (a FIFO) read-write with plain Lua: never blocks, and counts as
-- a writer, so every open of it that waits for one returns.
function M.release(path)
  local f = assert(io.open(path, "r+"))
  return f
end

--[[
Occupy every thread of libuv's pool: `n` tasks (default: the pool size) each
block in tether.fs.open of a FIFO, on a pool thread.  Call inside a task
group `g`.  Returns a function that releases them (idempotent); it waits
until they have all returned.  The caller must release before the group ends.
]]
function M.saturate(g, dir, n)
  n = n or tether.thread.pool_size
  local fifos, done = {}, 0
  for i = 1, n do
    fifos[i] = M.mkfifo(("%s/hold-%d"):format(dir, i))
    g:spawn(function()
      local f <close> = fs.open(fifos[i], "r")
      done = done + 1
    end)
  end
  -- Each open is queued at once and starts within microseconds; give the
  -- pool threads ample time to be inside open(2).
  tether.sleep(0.2)
  local released = false
  return function()
    if released then return end
    released = true
    local holders = {}
    for i = 1, n do holders[i] = M.release(fifos[i]) end
    M.wait_for(function() return done == n end, 10, "the pool threads to return")
    for i = 1, n do holders[i]:close() end
  end
end

return M
