-- spec/alloc/scenario.lua: one allocation-failure scenario, run by build/alloc-harness (see spec/alloc_spec.lua).
--
--   build/alloc-harness spec/alloc/scenario.lua NAME K [BURST]
--
-- Runs scenario NAME with the K-th allocation of its window (around one core
-- operation) failing, and BURST-1 more after it (default 2: Lua retries a
-- failed allocation once, after an emergency collection).  Prints one line:
--   RESULT <verdict> hits=<n> nomem=<n> <detail>
-- verdict: "ok" (ran as if nothing failed: the failure was absorbed),
-- "nomem" (a "not enough memory" error surfaced where it should, nothing else
-- lost), "bad" (something the contract forbids: the detail says what).
-- hits=0 means the K-th allocation never came (in any of the scenario's
-- windows): the scenario is exhausted.  count= is how many allocations the
-- last window made.
local tether = require("tether")

local NAME, K, BURST = ...
K, BURST = math.tointeger(tonumber(K or "")), math.tointeger(tonumber(BURST or "2"))

local MyErr = tether.error_class("MyErr")

local function is_nomem(e)
  if type(e) ~= "string" then return false end
  return e:find("not enough memory", 1, true) ~= nil or e:find("error in error handling", 1, true) ~= nil
end

-- Calls op() with the failure armed; returns pcall's first two results.
local function armed_call(op)
  alloc_fail_after(K, BURST)
  return op()
end
-- memory errors that a window returned to the code that ran it
local surfaced = 0
local function window(op)
  local ok, a, b = pcall(armed_call, op)
  alloc_disarm()
  if not ok and is_nomem(a) then surfaced = surfaced + 1 end
  return ok, a, b
end

local function leaves_of(e, out)
  out = out or { n = 0 }
  if tether.ErrorGroup:is(e) then
    for i = 1, e.errors.n do leaves_of(e.errors[i], out) end
  else
    out.n = out.n + 1
    out[out.n] = e
  end
  return out
end

local function show(e)
  local ok, s = pcall(tostring, e)
  s = ok and s or ("<" .. type(e) .. ">")
  return (s:gsub("%s+", " "):sub(1, 160))
end

-- ---- the scenarios ----------------------------------------------------------
-- Each returns: main (the function for tether.run), and an expectation:
--   must  = errors that must reach the top exactly once (a sibling's, raised
--           before the window opened: never to be lost)
--   may   = errors that may reach the top (at most once), or be replaced by
--           a "not enough memory" if the failure hit their task
--   check = optional function(state) -> nil or a text saying what is wrong

local S = {}

-- Networking: listen, connect, accept, a round trip, serve, UDP and a lookup
-- with the failure armed; afterwards a new connection must still work.
function S.net()
  local st = {}
  local function main()
    tether.with_group({ policy = "supervisor" }, function(g)
      local sib = g:spawn(function() tether.checkpoint(); error("SIBLING-1", 0) end)
      sib:wait()
      local l <close> = tether.tcp.listen(0)
      st.window_ok = window(function()
        local c <close> = tether.tcp.connect("127.0.0.1", l.port)
        local s <close> = l:accept()
        c:write("ping")
        assert(s:read_exactly(4) == "ping")
        tether.with_group(function(sg)
          local sl = sg:start(tether.tcp.serve, function(x) x:write(x:read()) end, 0, { limit = 2 })
          local d <close> = tether.tcp.connect("127.0.0.1", sl.port)
          d:write("a")
          assert(d:read() == "a")
          sg:cancel()
        end)
        local u <close> = tether.udp.open({ port = 0 })
        local v <close> = tether.udp.open()
        v:send_to("dgram", "127.0.0.1", u.port)
        assert(u:receive() == "dgram")
        tether.dns.getaddrinfo("localhost")
      end)
      local l2 <close> = tether.tcp.listen(0)
      local c2 <close> = tether.tcp.connect("127.0.0.1", l2.port)
      local s2 <close> = l2:accept()
      c2:write("after")
      st.after = s2:read()
    end)
  end
  return main, { must = { "SIBLING-1" }, may = {}, check = function()
    if st.after ~= "after" then return "a connection after the window failed: " .. tostring(st.after) end
  end }
end

-- g:spawn: spawning 20 tasks with the failure armed in the body.
function S.spawn()
  local st = { spawned = {} }
  local function main()
    tether.with_group({ policy = "supervisor" }, function(g)
      local sib = g:spawn(function() tether.checkpoint(); error("SIBLING-1", 0) end)
      sib:wait()
      local ok, e = window(function()
        for i = 1, 20 do
          st.spawned[#st.spawned + 1] = g:spawn(function() tether.checkpoint(); return i end)
        end
      end)
      st.window_ok = ok
      if not ok then
        st.window_err = e
        error(e, 0) -- the body fails with it: the group reports it
      end
    end)
  end
  return main, { must = { "SIBLING-1" }, may = {}, check = function()
    if not st.window_ok and not is_nomem(st.window_err) then
      return "g:spawn raised " .. show(st.window_err) .. ", not a memory error"
    end
    for i, t in ipairs(st.spawned) do
      if not t:done() then return "orphan: spawned task " .. i .. " is not done" end
    end
  end }
end

-- The end of a group: the body returns with the failure armed; the children
-- still sleep, one of them fails, then the join and the ErrorGroup.
function S.group_exit()
  local st = {}
  local function main()
    local ok, e = pcall(tether.with_group, { policy = "supervisor" }, function(g)
      local sib = g:spawn(function() error("SIBLING-1", 0) end)
      for i = 1, 8 do
        g:spawn(function()
          tether.sleep(0.0005 * i)
          if i == 5 then error("TARGET-5", 0) end
          return i
        end)
      end
      sib:wait()
      alloc_fail_after(K, BURST) -- open until with_group is back in main
    end)
    st.hits = alloc_disarm()
    if not ok then error(e, 0) end
  end
  return main, { must = { "SIBLING-1" }, may = { "TARGET-5" } }
end

-- Recording errors and building the ErrorGroup: 10 tasks failed before
-- the window (their errors must survive), 20 fail inside it (each may be
-- replaced by a memory error), then the join builds the group.
function S.errorgroup_build()
  local must, may = {}, {}
  for i = 1, 10 do must[i] = "SIBLING-" .. i end
  for i = 1, 20 do may[i] = "TARGET-" .. i end
  local function main()
    local ok, e = pcall(tether.with_group, { policy = "supervisor" }, function(g)
      local ts = {}
      for i = 1, 10 do ts[i] = g:spawn(function() error("SIBLING-" .. i, 0) end) end
      for i = 1, 10 do ts[i]:wait() end
      for i = 1, 20 do g:spawn(function() tether.checkpoint(); error("TARGET-" .. i, 0) end) end
      alloc_fail_after(K, BURST) -- the 20 fail, the body returns: join, ErrorGroup, raise
    end)
    alloc_disarm()
    if not ok then error(e, 0) end
  end
  return main, { must = must, may = may }
end

-- eg:split / subgroup / leaves on a nested group, in a task.
function S.split()
  local st = {}
  local function main()
    local eg = tether.ErrorGroup("outer", {
      "a1", tether.ErrorGroup("inner", { "b1", MyErr("x"), "a2", tether.ErrorGroup("deep", { "a3", "b2" }) }), "b3",
    })
    local ok, m, r = window(function() return eg:split("^a") end)
    st.split = { ok = ok, m = m, r = r }
    local ok2, sub = window(function() return eg:subgroup(MyErr) end)
    st.sub = { ok = ok2, v = sub }
    local ok3, lv = window(function() return eg:leaves() end)
    st.leaves = { ok = ok3, v = lv }
  end
  local function flat(g)
    local t = {}
    for _, x in ipairs(leaves_of(g)) do t[#t + 1] = tostring(x) end
    return table.concat(t, ",")
  end
  return main, { must = {}, may = {}, check = function()
    local s = st.split
    if s.ok then
      if flat(s.m) ~= "a1,a2,a3" or flat(s.r) ~= "b1,MyErr: x,b2,b3" then
        return "split gave wrong halves: " .. flat(s.m) .. " | " .. flat(s.r)
      end
      if s.m.message ~= "outer" or s.m.errors[2].message ~= "inner" then return "split lost the nesting" end
    elseif not is_nomem(s.m) then
      return "split raised " .. show(s.m)
    end
    if st.sub.ok then
      if flat(st.sub.v) ~= "MyErr: x" then return "subgroup gave " .. flat(st.sub.v) end
    elseif not is_nomem(st.sub.v) then
      return "subgroup raised " .. show(st.sub.v)
    end
    if st.leaves.ok then
      local lv = st.leaves.v
      if lv.n ~= 7 then return "leaves gave " .. tostring(lv.n) .. " leaves" end
    elseif not is_nomem(st.leaves.v) then
      return "leaves raised " .. show(st.leaves.v)
    end
  end }
end

-- Timer starts: 70 sleepers with distinct deadlines (the timer heap grows
-- past its first 64 entries) and 10 move_on_after deadlines, armed once
-- they are all spawned.
function S.timer_start()
  local st = { tasks = {} }
  local function main()
    local ok, e = pcall(tether.with_group, { policy = "supervisor" }, function(g)
      local sib = g:spawn(function() error("SIBLING-1", 0) end)
      sib:wait()
      for i = 1, 70 do
        st.tasks[#st.tasks + 1] = g:spawn(function() tether.sleep(0.002 + i * 1e-5); return i end)
      end
      for i = 1, 10 do
        st.tasks[#st.tasks + 1] = g:spawn(function()
          return tether.move_on_after(0.001 + i * 1e-5, tether.sleep, 1)
        end)
      end
      alloc_fail_after(K, BURST)
    end)
    st.hits = alloc_disarm()
    if not ok then error(e, 0) end
  end
  return main, { must = { "SIBLING-1" }, may = {}, check = function()
    for i, t in ipairs(st.tasks) do
      if not t:done() then return "orphan: task " .. i .. " is not done" end
      if t:failed() and not is_nomem(t:error()) then return "task " .. i .. " failed with " .. show(t:error()) end
    end
  end }
end

-- Traceback capture: a task raises from 30 frames deep with the failure armed.
function S.traceback()
  local function main()
    tether.with_group({ policy = "supervisor" }, function(g)
      local sib = g:spawn(function() error("SIBLING-1", 0) end)
      sib:wait()
      local t = g:spawn(function()
        local function deep(n)
          if n == 0 then
            alloc_fail_after(K, BURST)
            error("TARGET", 0)
          end
          return deep(n - 1) + 1
        end
        return deep(30)
      end)
      t:wait()
      alloc_disarm()
    end)
  end
  return main, { must = { "SIBLING-1" }, may = { "TARGET" } }
end

-- tether.catch over a failing group: one leaf handled, one not.
function S.catch()
  local st = {}
  local function main()
    tether.with_group({ policy = "supervisor" }, function(g)
      local sib = g:spawn(function() error("SIBLING-1", 0) end)
      sib:wait()
      local ok, e = window(function()
        return tether.catch(function()
          tether.with_group(function(g2)
            g2:spawn(function() error(MyErr("HANDLED")) end)
            g2:spawn(function() error("TARGET-unhandled", 0) end)
          end)
        end, { { MyErr, function(eg)
          for _, x in ipairs(leaves_of(eg)) do if MyErr:is(x) then st.handled = true end end
        end } })
      end)
      if not ok then error(e, 0) end
    end)
  end
  return main, { must = { "SIBLING-1" }, may = { "TARGET-unhandled" }, extra = { "MyErr: HANDLED" },
                 check = function(found, nomem)
    local n = found["MyErr: HANDLED"] or 0
    if st.handled and n > 0 then return "a leaf handled by catch was raised again" end
    if not st.handled and n ~= 1 and nomem == 0 then return "a leaf that no handler took was lost" end
    if n > 1 then return "the leaf MyErr: HANDLED was reported " .. n .. " times" end
  end }
end

-- Channels: creation, clones, sends that grow an unbounded ring, hand-overs
-- to a waiting consumer, statistics, and the errors of closed endpoints,
-- all with the failure armed.  A send that fails delivered nothing: the
-- consumer's sum is that of the sends that returned.
function S.channel()
  local st = { sum = 0 }
  local function main()
    tether.with_group({ policy = "supervisor" }, function(g)
      local sib = g:spawn(function() error("SIBLING-1", 0) end)
      sib:wait()
      local send, recv = tether.channel(math.huge, { name = "c" })
      local s0, r0 = tether.channel(0)
      st.consumer = g:spawn(function()
        local got = 0
        for v in recv do got = got + v end
        st.got = got
      end)
      local ok, e = window(function()
        local s3 = send:clone()
        for i = 1, 100 do
          s3:send(i)
          st.sum = st.sum + i
        end
        s3:close()
        local _ = send:statistics()
        local s2, r2 = tether.channel(2, { name = "w" })
        s2:send_nowait(1)
        r2:close()
        pcall(s2.send_nowait, s2, 2)          -- BrokenResourceError
        s2:close()
        pcall(s2.send_nowait, s2, 3)          -- ClosedResourceError
        pcall(r0.receive_nowait, r0)          -- WouldBlock
        s0:close()
        pcall(r0.receive_nowait, r0)          -- EndOfChannel
      end)
      send:close()
      st.consumer:wait()
      if not ok then error(e, 0) end
    end)
  end
  return main, { must = { "SIBLING-1" }, may = {}, check = function()
    local c = st.consumer
    if not c or not c:done() then return "orphan: the consumer is not done" end
    if c:failed() then
      if not is_nomem(c:error()) then return "the consumer failed with " .. show(c:error()) end
    elseif st.got ~= st.sum then
      return ("the consumer received %s in total, the sends that returned sent %d"):format(tostring(st.got), st.sum)
    end
  end }
end

-- Event, Lock, Semaphore, CapacityLimiter, Condition: 12 tasks wait on an
-- Event, then each takes a limiter token, a semaphore unit (its guard is
-- allocated) and the lock, all under <close>, with the failure armed.
-- Whatever failed, nothing is left held.
function S.sync()
  local st = {}
  local function main()
    tether.with_group({ policy = "supervisor" }, function(g)
      local sib = g:spawn(function() error("SIBLING-1", 0) end)
      sib:wait()
      local lim, sem, lk = tether.CapacityLimiter(2), tether.Semaphore(2), tether.Lock()
      st.lim, st.sem, st.lk = lim, sem, lk
      local ok, e = window(function()
        local ev = tether.Event({ name = "e" })
        local cond = tether.Condition(nil, { name = "c" })
        tether.with_group(function(g2)
          for _ = 1, 12 do
            g2:spawn(function()
              ev:wait()
              local _ <close> = lim:acquire()
              local _ <close> = sem:acquire()
              local _ <close> = lk:acquire()
              tether.checkpoint()
              local _ <close> = cond.lock:acquire()
              cond:notify_all()
            end)
          end
          tether.checkpoint()
          ev:set()
        end)
      end)
      if not ok then error(e, 0) end
    end)
  end
  return main, { must = { "SIBLING-1" }, may = {}, check = function()
    if st.lim.borrowed ~= 0 then return "the limiter still lends " .. st.lim.borrowed .. " tokens" end
    if st.sem.value ~= 2 then return "the semaphore has " .. st.sem.value .. " units, not 2" end
    if st.lk:locked() then return "the lock is still held" end
  end }
end

-- ---- judging one run -------------------------------------------------------

-- Runs scenario `name` once and returns verdict, hits, nomem, count, problems.
local function judge(name)
  surfaced = 0
  local main, expect = S[name]()
  local ok, err = pcall(tether.run, main)
  local count, hits = alloc_count(), alloc_total_hits()
  alloc_disarm()

  local problems = {}
  local function bad(fmt, ...) problems[#problems + 1] = fmt:format(...) end

  -- what reached the top
  local found, nomem = {}, 0
  if not ok then
    local lv = leaves_of(err)
    for i = 1, lv.n do
      local e = lv[i]
      if is_nomem(e) then
        nomem = nomem + 1
      else
        local s = type(e) == "string" and e or (MyErr:is(e) and tostring(e)) or nil
        if s then found[s] = (found[s] or 0) + 1 else bad("unknown error at the top: %s", show(e)) end
      end
    end
  end
  local known = {}
  for _, s in ipairs(expect.must) do
    known[s] = true
    if (found[s] or 0) ~= 1 then
      bad("the error %s, raised before the failure, was reported %d times (lost)", s, found[s] or 0)
    end
  end
  for _, s in ipairs(expect.may) do
    known[s] = true
    if (found[s] or 0) > 1 then bad("the error %s was reported %d times", s, found[s]) end
    if hits == 0 and (found[s] or 0) ~= 1 then bad("the error %s was not reported (and nothing failed)", s) end
  end
  for _, s in ipairs(expect.extra or {}) do known[s] = true end
  for s in pairs(found) do
    if not known[s] then bad("unexpected error at the top: %s", s) end
  end
  if hits == 0 and nomem > 0 then bad("a memory error although no allocation failed") end
  if #expect.must == 0 and not ok and nomem == 0 then bad("tether.run raised %s", show(err)) end
  if expect.check then
    local msg = expect.check(found, nomem)
    if msg then bad("%s", msg) end
  end

  -- nothing left alive, and the scheduler still works
  local st = tether.stats()
  if st.tasks ~= 0 or st.handles ~= 0 or st.timers ~= 0 or st.running ~= false then
    bad("stats after the run: tasks=%s handles=%s timers=%s running=%s", tostring(st.tasks), tostring(st.handles),
      tostring(st.timers), tostring(st.running))
  end
  local sane, why = pcall(tether.run, function()
    return tether.with_group(function(g)
      local a = g:spawn(function() tether.sleep(0.001); return 1 end)
      local b = g:spawn(function() tether.checkpoint(); return 2 end)
      a:wait()
      b:wait()
      return a:result() + b:result()
    end)
  end)
  if not sane or why ~= 3 then bad("a second tether.run failed: %s", show(why)) end

  -- a memory error the scenario caught where the operation ran counts too
  local verdict = #problems > 0 and "bad" or ((nomem > 0 or surfaced > 0) and "nomem" or "ok")
  return verdict, hits, nomem, count, problems
end

-- Loaded with require("alloc.scenario"): the scenarios, to run in-process
-- without a failure (the alloc_* globals must exist: stubs are fine).
if NAME == "alloc.scenario" then
  local names = {}
  for k in pairs(S) do names[#names + 1] = k end
  table.sort(names)
  return { names = names, judge = judge }
end

assert(S[NAME], "no scenario " .. tostring(NAME))
assert(K and K >= 1, "K must be a positive integer")
local verdict, hits, nomem, count, problems = judge(NAME)
io.write(("RESULT %s hits=%d nomem=%d count=%d %s\n"):format(verdict, hits, nomem, count,
  table.concat(problems, "; ")))
