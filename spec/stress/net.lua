-- spec/stress/net.lua: random task trees over loopback connections whose reads and writes are cancelled at random.
--
--   local net = require("stress.net")
--   local res = net.run(seed [, opts])   -- one tree: a tether.run of its own
--   res.violations   -- array of texts (empty when the tree passed)
--   res.conns, res.bytes, res.cancelled_reads, res.cancelled_writes, res.raised, res.reported
--
--   lua5.4 spec/stress/net.lua [SEED [TREES]]   -- as a script: TREES trees, a report
--
-- A tree is a server (tcp.serve, or tcp.listen + accept, or a local socket)
-- and a few connections.  On each connection one task writes a seeded byte
-- sequence in random chunks, and one task reads it back with random readers
-- (read, read_exactly, read_line, read_until), each operation wrapped at
-- random in a scope that is cancelled before, during or just after it (a
-- deadline of 0, a short deadline, a sibling calling scope:cancel).  Some
-- tasks raise, in random places, an error with an identity.
--
-- What is checked, from the contract (§6.1, §6.2, §6.9):
--   * a cancelled read consumes nothing: what the reader got, in order, is
--     a prefix of what the writer handed to write() (no loss, no
--     duplicate, no reordering), and all of it when no write was cancelled;
--   * a cancelled write closes the stream: a later write raises
--     ClosedResourceError, never something else;
--   * every error a task raised comes out of tether.run's ErrorGroup exactly
--     once (the ledger), and nothing else but Cancelled-free groups;
--   * after the run: tether.stats() is all zero and the process has as many
--     file descriptors as before.
local tether = require("tether")

local M = {}

-- NOTE: listed by a child into a file: a popen pipe's two ends may both be
-- open in this process for a moment, and would be counted.
local listing = os.tmpname()
local function fdcount()
  local n = 0
  os.execute("env -u LD_PRELOAD ls /proc/" .. M.pid() .. "/fd > " .. listing)
  local f = assert(io.open(listing))
  for _ in f:lines() do n = n + 1 end
  f:close()
  os.remove(listing)
  return n
end

function M.pid()
  if not M._pid then
    local f = io.open("/proc/self/stat")
    M._pid = f:read("n")
    f:close()
  end
  return M._pid
end


local StressNetErr = tether.error_class("StressNetErr")

-- Run `fn` under a scope that a random policy cancels: returns ok, results
-- (ok false: the scope caught the cancellation).
local function maybe_cancelled(rnd, sib_g, fn, ...)
  local kind = rnd(10)
  if kind <= 5 then return true, fn(...) end
  if kind == 6 then return tether.move_on_after(0, fn, ...) end
  if kind <= 8 then return tether.move_on_after(rnd(3) * 0.0005, fn, ...) end
  local scope = tether.cancel_scope({})
  sib_g:spawn(function()
    for _ = 1, rnd(3) - 1 do tether.checkpoint() end
    scope:cancel()
  end)
  return scope:run(fn, ...)
end

-- The byte sequence of connection `i`: lines of printable text, so that
-- read_line and read_until have separators to find.
local function payload(rnd, i, n)
  local parts = {}
  for k = 1, n do
    parts[k] = ("c%d.%d:%s\n"):format(i, k, ("abcdefghij"):rep(rnd(20)):sub(1, rnd(150)))
  end
  return table.concat(parts)
end

-- One run with every kind of object first: libuv opens a few descriptors
-- per loop at first use, which the fd check must not count.
function M.warm()
  if M.warmed then return end
  M.warmed = true
  tether.run(function()
    local l <close> = tether.tcp.listen(0)
    local c <close> = tether.tcp.connect("127.0.0.1", l.port)
    local a <close> = l:accept()
    tether.dns.getaddrinfo("127.0.0.1")
  end)
end

function M.run(seed, opts)
  opts = opts or {}
  M.warm()
  math.randomseed(seed)
  local rnd = math.random
  local res = { violations = {}, conns = 0, bytes = 0, cancelled_reads = 0,
                cancelled_writes = 0, raised = 0, reported = 0 }
  local function violation(fmt, ...) res.violations[#res.violations + 1] = fmt:format(...) end
  local raised = {}                 -- id -> true: errors raised by the tree
  local function raise_id()
    res.raised = res.raised + 1
    local id = "<<N" .. res.raised .. ">>"
    raised[id] = 0
    error(StressNetErr(id))
  end

  local nconn = opts.conns or rnd(4)
  local server_kind = ({ "serve", "accept", "unix" })[rnd(3)]
  local plans = {}
  for i = 1, nconn do
    plans[i] = {
      data = payload(rnd, i, rnd(40)),
      chunk = rnd(3) == 1 and 1 + rnd(7) or 50 + rnd(4000),
      fail_writer = rnd(8) == 1 and rnd(10),
      fail_reader = rnd(8) == 1 and rnd(10),
    }
  end
  local got, sent, wcancel = {}, {}, {}

  local function writer(i, s, g)
    local p, pos, k = plans[i], 1, 0
    sent[i] = {}
    while pos <= #p.data do
      k = k + 1
      if p.fail_writer == k then raise_id() end
      local piece = p.data:sub(pos, pos + p.chunk - 1)
      local ok, e = pcall(maybe_cancelled, rnd, g, s.write, s, piece)
      if ok and e == false then
        -- the scope caught a cancel: the stream is closed, unless the write
        -- raised before it queued anything (then nothing of it was sent)
        res.cancelled_writes = res.cancelled_writes + 1
        local ok2, e2 = pcall(s.write, s, "x")
        if ok2 then
          sent[i][#sent[i] + 1] = "x"
          piece = ""                                   -- not sent: write it again
        elseif tether.ClosedResourceError:is(e2) then
          wcancel[i] = true
          sent[i][#sent[i] + 1] = piece                -- perhaps partly sent
          return
        elseif tether.BrokenResourceError:is(e2) then  -- the peer is gone already
          wcancel[i] = true
          return
        elseif tether.Cancelled:is(e2) then            -- an outer scope: pass it on
          wcancel[i] = true
          error(e2, 0)
        else
          violation("conn %d: a write after a cancelled write raised %s", i, tostring(e2))
          return
        end
      elseif not ok then
        if tether.BrokenResourceError:is(e) or tether.ClosedResourceError:is(e) then return end
        error(e, 0)
      else
        sent[i][#sent[i] + 1] = piece
      end
      pos = pos + #piece
    end
    local okc, ec = pcall(s.close_write, s)
    if not okc and not tether.BrokenResourceError:is(ec) then error(ec, 0) end
  end

  local done_readers, finished = 0, {}
  local function reader(i, s, g)
    local p, buf, k = plans[i], {}, 0
    got[i] = buf
    local _ <close> = setmetatable({}, { __close = function(_, e)
      if e == nil then done_readers = done_readers + 1; finished[i] = true end
    end })
    while true do
      k = k + 1
      if p.fail_reader == k then raise_id() end
      local how = rnd(4)
      local f
      if how == 1 then f = function() return s:read(1 + rnd(300)) end
      elseif how == 2 then f = function() return s:read_line({ keep = true }) end
      elseif how == 3 then f = function() return s:read_until(":") end
      else f = function() return s:read_exactly(1 + rnd(64)) end end
      local ok, r1, r2 = pcall(maybe_cancelled, rnd, g, f)
      if ok and r1 == false then
        res.cancelled_reads = res.cancelled_reads + 1
      elseif ok then
        if r2 == nil then return end                         -- EOF
        buf[#buf + 1] = r2
      else
        local e = r1
        if tether.IncompleteReadError:is(e) then
          buf[#buf + 1] = e.partial
          return
        end
        if tether.BrokenResourceError:is(e) or tether.ClosedResourceError:is(e) then return end
        error(e, 0)
      end
    end
  end

  -- one side of a connection: the reader, and the writer with its own group
  local function side(i, s)
    tether.with_group(function(g)
      g:spawn(function() tether.with_group(function(wg) writer(i, s, wg) end) end)
    end)
  end

  local function server_side(i, s)
    tether.with_group(function(g) reader(i, s, g) end)
  end

  local before = opts.fd_check ~= false and fdcount()
  local ok, err = pcall(tether.run, function()
    tether.with_group(function(top)
      local port, path, listener, nextconn = nil, nil, nil, 0
      local function handler(s)
        nextconn = nextconn + 1
        server_side(nextconn, s)
      end
      if server_kind == "serve" then
        listener = top:start(tether.tcp.serve, handler, 0)
        port = listener.port
      elseif server_kind == "unix" then
        path = os.tmpname()
        os.remove(path)
        listener = top:start(tether.unix.serve, handler, path)
      else
        listener = tether.tcp.listen(0)
        port = listener.port
        top:spawn(function()
          local l <close> = listener
          tether.with_group(function(ag)
            while true do
              local ok2, s = pcall(l.accept, l)
              if not ok2 then
                if tether.ClosedResourceError:is(s) then return end
                error(s, 0)
              end
              ag:spawn(function() local c <close> = s; handler(c) end)
            end
          end)
        end)
      end
      -- connections one after the other, so that the server numbers them as we do
      tether.with_group(function(cg)
        for i = 1, nconn do
          local c = port and tether.tcp.connect("127.0.0.1", port) or tether.unix.connect(path)
          res.conns = res.conns + 1
          cg:spawn(function() local cc <close> = c; side(i, cc) end)
          tether.sleep(0.001)
        end
      end)
      for _ = 1, 3000 do                    -- let the readers reach the end
        if done_readers >= nconn then break end
        tether.sleep(0.001)
      end
      top:cancel()
    end)
  end)

  -- the ledger: every raised error exactly once
  if not ok then
    local function walk(e)
      if tether.ErrorGroup:is(e) then
        for j = 1, e.errors.n do walk(e.errors[j]) end
      elseif StressNetErr:is(e) and raised[e.message] then
        raised[e.message] = raised[e.message] + 1
        res.reported = res.reported + 1
      else
        violation("tether.run raised an error the tree did not raise: %s", tostring(e))
      end
    end
    walk(err)
  end
  for id, n in pairs(raised) do
    if n ~= 1 then violation("error %s reported %d times", id, n) end
  end

  -- the bytes: a prefix of what was handed to write, all of it without a cancelled write
  for i = 1, nconn do
    local g_ = table.concat(got[i] or {})
    local s_ = table.concat(sent[i] or {})
    res.bytes = res.bytes + #g_
    if s_:sub(1, #g_) ~= g_ then
      local at = 1
      while at <= #g_ and g_:sub(at, at) == s_:sub(at, at) do at = at + 1 end
      violation("conn %d: the reader got bytes that were not written there (first difference at %d of %d)",
        i, at, #g_)
    end
    if ok and finished[i] and not wcancel[i] and #g_ ~= #s_ then
      violation("conn %d: no write was cancelled, yet the reader got %d of %d bytes", i, #g_, #s_)
    end
  end

  local st = tether.stats()
  for _, key in ipairs({ "tasks", "handles", "timers", "io" }) do
    if st[key] ~= 0 then violation("after the run: stats().%s = %d", key, st[key]) end
  end
  if before then
    collectgarbage()
    collectgarbage()
    local after = fdcount()
    if after ~= before then violation("file descriptors: %d before the run, %d after", before, after) end
  end
  return res
end

-- As a script: lua5.4 spec/stress/net.lua [SEED [TREES]]
if arg and arg[0] and arg[0]:match("stress/net%.lua$") and not package.loaded["stress.net"] then
  local seed = tonumber(arg[1]) or os.time()
  local n = tonumber(arg[2]) or 200
  local totals = { conns = 0, bytes = 0, cr = 0, cw = 0, raised = 0, reported = 0 }
  local bad = 0
  for i = 1, n do
    local r = M.run(seed * 1000 + i)
    totals.conns = totals.conns + r.conns
    totals.bytes = totals.bytes + r.bytes
    totals.cr = totals.cr + r.cancelled_reads
    totals.cw = totals.cw + r.cancelled_writes
    totals.raised = totals.raised + r.raised
    totals.reported = totals.reported + r.reported
    if #r.violations > 0 then
      bad = bad + 1
      print(("tree %d: %s"):format(seed * 1000 + i, table.concat(r.violations, "; ")))
    end
  end
  print(("%d trees, %d connections, %d bytes, %d cancelled reads, %d cancelled writes, %d errors raised, %d reported, %d trees failed")
    :format(n, totals.conns, totals.bytes, totals.cr, totals.cw, totals.raised, totals.reported, bad))
  os.exit(bad == 0 and 0 or 1)
end

return M
