-- spec/stress/sync.lua: randomized producer/consumer trees on channels and primitives, with a ledger of every value.
--
--   local sync = require("stress.sync")
--   local res = sync.run(seed)      -- res.violations (empty when the tree passed), res.sent, res.received, ...
--
-- A seed picks a channel capacity (0, 1, 2, 5, math.huge), producers that
-- send numbered values through clones of the send side, consumers that
-- receive through clones (each value processed under a Lock, a Semaphore
-- guard and a CapacityLimiter token, with random checkpoints), a sink that is
-- never cancelled, and a chaos task that cancels random producers and
-- consumers at random moments, sometimes right after handing them something
-- (the same-tick case), and sometimes closes every receive endpoint (the
-- values still buffered are then dropped: the one loss the test causes, and
-- it is counted).  The core is not trusted: the test writes down each send
-- that returned and each value received, and checks at the end:
--   * every value whose send returned was received exactly once, or was in
--     the buffer when the last receiver closed (counted, never silent);
--   * no value was received twice, or without its send having returned
--     (a cancelled or failed send delivered nothing);
--   * nobody held the Lock with someone else, the Semaphore and the limiter
--     were never exceeded, and all of them are free at the end (a cancelled
--     acquire holds nothing; guards release);
--   * only the errors the rules allow were raised (Cancelled,
--     EndOfChannel, BrokenResourceError, ClosedResourceError);
--   * after tether.run, tether.stats() is all zero.
local tether = require("tether")

local M = {}

local CAPS = { 0, 1, 2, 5, math.huge }

local function safe(v)
  local ok, s = pcall(tostring, v)
  return ok and s or "<" .. type(v) .. ">"
end

function M.run(seed)
  math.randomseed(seed)
  local rnd = math.random
  local V = {}
  local function viol(fmt, ...) V[#V + 1] = fmt:format(...) end

  local cap = CAPS[rnd(1, #CAPS)]
  local nprod, ncons = rnd(1, 4), rnd(1, 4)
  local per_prod = rnd(5, 60)
  local sem_n, lim_n = rnd(1, 3), rnd(1, 3)
  local early_close = rnd() < 0.15
  local chaos_rounds = rnd(0, 40)

  local sent, received = {}, {}     -- id -> true / count
  local nsent, nreceived, dropped = 0, 0, 0
  local in_lock, in_sem, in_lim = 0, 0, 0
  local stats = { cancelled = 0, broken = 0, closed = 0 }

  local function allowed(e, where)
    if tether.Cancelled:is(e) then stats.cancelled = stats.cancelled + 1; return end
    if tether.BrokenResourceError:is(e) then stats.broken = stats.broken + 1; return end
    if tether.ClosedResourceError:is(e) then stats.closed = stats.closed + 1; return end
    viol("%s raised %s", where, safe(e))
  end

  local function take(v, who)
    local c = (received[v] or 0) + 1
    received[v] = c
    nreceived = nreceived + 1
    if c > 1 then viol("value %s received %d times (last by %s)", safe(v), c, who) end
  end

  local ok, err = pcall(tether.run, function()
    local send, recv = tether.channel(cap, { name = "stress" })
    local lk, sem, lim = tether.Lock(), tether.Semaphore(sem_n), tether.CapacityLimiter(lim_n)
    local start = tether.Event()
    local recv_ends = { recv }
    local tasks = {}

    local function process(v, who)
      do
        local _ <close> = lk:acquire()
        in_lock = in_lock + 1
        if in_lock > 1 then viol("two tasks hold the Lock") end
        local ok2, e = pcall(function() if rnd() < 0.3 then tether.checkpoint() end end)
        in_lock = in_lock - 1
        if not ok2 then error(e, 0) end
        if rnd() < 0.5 then lk:release() end        -- by hand: the guard then does nothing
      end
      local g1 <close> = sem:acquire()
      in_sem = in_sem + 1
      local _ <close> = setmetatable({}, { __close = function() in_sem = in_sem - 1 end })
      if in_sem > sem_n then viol("the Semaphore(%d) admitted %d", sem_n, in_sem) end
      local g2 <close> = lim:acquire()
      in_lim = in_lim + 1
      local _ <close> = setmetatable({}, { __close = function() in_lim = in_lim - 1 end })
      if in_lim > lim_n then viol("the CapacityLimiter(%d) lent %d tokens", lim_n, in_lim) end
      if rnd() < 0.3 then tether.checkpoint() end
      take(v, who)
    end

    tether.with_group({ name = "stress" }, function(g)
      for p = 1, nprod do
        local s = send:clone()
        tasks[#tasks + 1] = g:spawn({ name = "producer " .. p }, function()
          local _ <close> = s
          start:wait()
          for i = 1, per_prod do
            local id = p * 100000 + i
            local ok2, e = pcall(s.send, s, id)
            if ok2 then
              sent[id] = true
              nsent = nsent + 1
            else
              allowed(e, "send")
              if not tether.Cancelled:is(e) then return end
              error(e, 0)
            end
            if rnd() < 0.2 then tether.checkpoint() end
          end
        end)
      end
      for c = 1, ncons do
        local r = recv:clone()
        recv_ends[#recv_ends + 1] = r
        tasks[#tasks + 1] = g:spawn({ name = "consumer " .. c }, function()
          local _ <close> = r
          start:wait()
          while true do
            local ok2, v = pcall(r.receive, r)
            if not ok2 then
              if tether.EndOfChannel:is(v) then return end
              allowed(v, "receive")
              if tether.Cancelled:is(v) then error(v, 0) end
              return
            end
            local ok3, e = pcall(process, v, "consumer " .. c)
            if not ok3 then
              if not tether.Cancelled:is(e) then viol("process raised %s", safe(e)) end
              if not received[v] then take(v, "consumer " .. c .. " (cancelled while processing)") end
              error(e, 0)
            end
          end
        end)
      end
      g:spawn({ name = "sink" }, function()         -- never cancelled: nobody waits forever
        start:wait()
        local ok2, e = pcall(function()
          for v in recv do take(v, "sink") end
        end)
        if not ok2 then allowed(e, "sink") end
      end)
      local cs = send:clone()
      send:close()                                  -- only the clones keep the channel open
      g:spawn({ name = "chaos" }, function()
        local _ <close> = cs
        start:set()
        for k = 1, chaos_rounds do
          for _ = 1, rnd(0, 3) do tether.checkpoint() end
          if rnd() < 0.3 then
            -- hand a value to a waiting receiver (if any) and cancel a task in
            -- the same tick: the handed value must still be received once
            local id = 900000 + k
            if pcall(cs.send_nowait, cs, id) then
              sent[id] = true
              nsent = nsent + 1
            end
          end
          if rnd() < 0.5 then tasks[rnd(1, #tasks)]:cancel("chaos") end
        end
        if early_close then
          -- the last receiver to close drops what is buffered: count it
          for _, r in ipairs(recv_ends) do
            local st = r:statistics()
            r:close()
            if st.open_receive_channels == 1 and r:statistics().open_receive_channels == 0 then
              dropped = dropped + st.current_buffer_used
            end
          end
        end
      end)
    end)
    if lk:locked() then viol("the Lock is still held at the end") end
    if sem.value ~= sem_n then viol("the Semaphore has %d units at the end, not %d", sem.value, sem_n) end
    if lim.borrowed ~= 0 then viol("the CapacityLimiter lends %d tokens at the end", lim.borrowed) end
  end)
  if not ok then viol("tether.run raised %s", safe(err)) end
  if nreceived + dropped ~= nsent then
    viol("%d sends returned, %d values received, %d dropped by closing every receiver (early_close=%s)",
      nsent, nreceived, dropped, tostring(early_close))
  end
  for id in pairs(received) do
    if not sent[id] then viol("value %d was received but its send did not return (a cancelled or failed send delivered it)", id) end
  end
  for id in pairs(sent) do
    if not received[id] and dropped == 0 then viol("value %d was sent and never received", id) end
  end
  local s = tether.stats()
  if s.tasks ~= 0 or s.handles ~= 0 or s.timers ~= 0 or s.running ~= false then
    viol("after tether.run: stats tasks=%s handles=%s timers=%s", safe(s.tasks), safe(s.handles), safe(s.timers))
  end
  return { seed = seed, violations = V, sent = nsent, received = nreceived, dropped = dropped,
           cancelled = stats.cancelled, broken = stats.broken, closed = stats.closed, capacity = cap }
end

return M
