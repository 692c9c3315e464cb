-- spec/helper.lua: loaded once by busted (see .busted), before the spec files run.
-- 1. Makes require("tether") find this checkout: lua/ and the build directory
--    ($TETHER_BUILD, default build/; `make check` uses build-asan/).
-- 2. After every test case, checks that tether left nothing alive:
--    tether.stats() must report no tasks, handles or timers and no running
--    tether.run. A violation fails that test case.
local busted = require 'busted'
local plpath = require 'pl.path'

-- The checkout's root, from this file's own path (busted runs it from the root,
-- but `busted -C` or an absolute --helper path must work too).
local here = debug.getinfo(1, 'S').source:match('^@(.*)$') or 'spec/helper.lua'
local root = plpath.dirname(plpath.dirname(plpath.abspath(here)))
local build = os.getenv('TETHER_BUILD') or 'build'
if not plpath.isabs(build) then build = plpath.join(root, build) end

package.path = root .. '/lua/?.lua;' .. root .. '/lua/?/init.lua;' .. package.path
package.cpath = build .. '/?.so;' .. package.cpath

-- Loaded once here, before busted insulates each spec file, so every file
-- shares this instance (require in a spec returns the same table).
local ok, tether = pcall(require, 'tether')
if not ok then
  io.stderr:write('spec/helper.lua: require("tether") failed, the after-test leak check is off:\n  ',
                  tostring(tether), '\n')
  tether = nil
elseif type(tether.stats) ~= 'function' then
  -- NOTE: only while the core is being written; once stats() exists the check is strict.
  io.stderr:write('spec/helper.lua: tether.stats() does not exist yet, the after-test leak check is off\n')
  tether = nil
end

-- The process's open descriptors (the directory handle itself counts once, always).
local lfs = require 'lfs'
local function fd_count()
  local n = 0
  for name in lfs.dir('/proc/self/fd') do
    if name ~= '.' and name ~= '..' then n = n + 1 end
  end
  return n
end
-- NOTE: libuv keeps a few descriptors per loop once a run used each kind of
-- object (the signal pipe of the SIGINT watcher; /dev/null descriptors it
-- reserves for streams): one run here uses each kind, so that they exist
-- before the first case counts. Add a kind here when a new one is built.
local warmups = {
  function() end,
  function()
    local a, b = tether.stream_pair()
    a:write("x"); b:read(); a:close(); b:close()
  end,
  function()                                  -- TCP, UDP, DNS (the thread pool)
    local l <close> = tether.tcp.listen(0)
    local c <close> = tether.tcp.connect("127.0.0.1", l.port)
    local s <close> = l:accept()
    local u <close> = tether.udp.open({ port = 0 })
    tether.dns.getaddrinfo("127.0.0.1")
  end,
}
if tether and tether.run then
  for _, w in ipairs(warmups) do pcall(tether.run, w) end
end
local fds_before

-- Returns nil when tether is idle, else a text saying what is still alive.
local function leftovers()
  local s = tether.stats()
  if type(s) ~= 'table' then
    return 'tether.stats() returned ' .. type(s) .. ', expected a table'
  end
  local bad = {}
  for _, k in ipairs { 'tasks', 'handles', 'timers', 'io' } do
    if s[k] ~= nil and s[k] ~= 0 then bad[#bad + 1] = ('%s = %s'):format(k, tostring(s[k])) end
  end
  if fds_before then
    collectgarbage(); collectgarbage()
    local n = fd_count()
    if n > fds_before then
      bad[#bad + 1] = ('%d more open file descriptors than before the case'):format(n - fds_before)
    end
  end
  if s.running ~= false then bad[#bad + 1] = 'running = ' .. tostring(s.running) end
  if #bad == 0 then return nil end
  return table.concat(bad, ', ')
end

-- NOTE: busted 2.1 runs after_each hooks only after it has reported the test,
-- so a failing hook can't fail the test case itself. Instead, when a test
-- starts, its body is wrapped so the check runs right after the body, inside
-- the same protected call: a violation is that test's failure.
-- A body that raised is not checked (its own error is the report); what it
-- leaves behind fails the next test, which then names the culprit.
local function fullname(element)
  local names = {}
  while element and element.descriptor ~= 'file' and element.name do
    table.insert(names, 1, element.name)
    element = busted.parent(element)
  end
  return table.concat(names, ' ')
end

if tether then
  local wrapped = setmetatable({}, { __mode = 'k' })
  local culprit   -- the first test after which tether state stayed alive, if any

  busted.subscribe({ 'test', 'start' }, function(element)
    if wrapped[element] or type(element.run) ~= 'function' then return nil, true end
    wrapped[element] = true
    local body = element.run
    element.run = function(...)
      local inherited = culprit
      fds_before = fd_count()
      body(...)
      local alive = leftovers()
      if alive then
        local msg = 'tether left state alive after this test: ' .. alive
        if inherited then msg = msg .. '\n(alive since the test "' .. inherited .. '")' end
        busted.fail(msg, 0)
      end
    end
    return nil, true
  end)

  busted.subscribe({ 'test', 'end' }, function(element)
    local ok, alive = pcall(leftovers)
    if ok and not alive then culprit = nil
    else culprit = culprit or fullname(element) end
    return nil, true
  end)
end
