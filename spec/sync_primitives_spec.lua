-- Event, Lock, Semaphore, CapacityLimiter, Condition (contract section 7): checkpoints, FIFO, owners, guards, cancellation.
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local error_of, msg_of, wait_until, is_cancelled = support.error_of, support.msg_of, support.wait_until,
  support.is_cancelled

-- Runs body(g) in a group inside tether.run.
local function in_group(body)
  return tether.run(function() return tether.with_group(body) end)
end

-- Cancels a scope around fn and returns the error fn raised (a Cancelled).
local function in_cancelled_scope(fn)
  local err
  tether.cancel_scope({}):run(function()
    local sc = tether.cancel_scope({})
    sc:run(function()
      sc:cancel()
      local ok, e = pcall(fn)
      assert(not ok, "no error in a cancelled scope")
      err = e
    end)
  end)
  return err
end

-- Each acquire-like operation is a checkpoint even when it need not wait.
local acquirers = {
  { "ev:wait on a set Event", function() local ev = tether.Event(); ev:set(); return function() ev:wait() end end },
  { "lk:acquire on a free Lock", function() local lk = tether.Lock(); return function() lk:acquire(); lk:release() end end },
  { "sem:acquire with units", function() local s = tether.Semaphore(5); return function() s:acquire():release() end end },
  { "lim:acquire with tokens", function() local l = tether.CapacityLimiter(5); return function() l:acquire(); l:release() end end },
}

describe("every acquire and wait is a checkpoint", function()
  for _, c in ipairs(acquirers) do
    local what, make = c[1], c[2]
    it(what .. " yields to other tasks even when it need not wait", function()
      local log = {}
      in_group(function(g)
        local op = make()
        g:spawn(function() log[#log + 1] = "a1"; op(); log[#log + 1] = "a2" end)
        g:spawn(function() log[#log + 1] = "b1"; tether.checkpoint(); log[#log + 1] = "b2" end)
      end)
      assert.are.same({ "a1", "b1", "a2", "b2" }, log)
    end)

    it(what .. " raises Cancelled in a cancelled scope and does nothing", function()
      tether.run(function()
        local op = make()
        local e = in_cancelled_scope(op)
        assert.is_true(is_cancelled(e))
      end)
    end)
  end

  it("acquire in a cancelled scope takes nothing (counted)", function()
    tether.run(function()
      local lk, sem, lim = tether.Lock(), tether.Semaphore(1), tether.CapacityLimiter(1)
      assert.is_true(is_cancelled(in_cancelled_scope(function() lk:acquire() end)))
      assert.is_true(is_cancelled(in_cancelled_scope(function() sem:acquire() end)))
      assert.is_true(is_cancelled(in_cancelled_scope(function() lim:acquire() end)))
      assert.is_false(lk:locked())
      assert.are.equal(1, sem.value)
      assert.are.equal(0, lim.borrowed)
    end)
  end)

  it("the _nowait forms are not checkpoints", function()
    local log = {}
    in_group(function(g)
      local lk, sem, lim = tether.Lock(), tether.Semaphore(1), tether.CapacityLimiter(1)
      g:spawn(function()
        log[#log + 1] = "a1"
        lk:acquire_nowait(); lk:release()
        sem:acquire_nowait():release()
        lim:acquire_nowait(); lim:release()
        log[#log + 1] = "a2"
      end)
      g:spawn(function() log[#log + 1] = "b" end)
    end)
    assert.are.same({ "a1", "a2", "b" }, log)
  end)

  it("blocking operations outside tether.run raise a clear error", function()
    assert.matches("ev:wait: called outside tether.run", msg_of(function() tether.Event():wait() end))
    assert.matches("lk:acquire: called outside tether.run", msg_of(function() tether.Lock():acquire() end))
    assert.matches("sem:acquire: called outside tether.run", msg_of(function() tether.Semaphore(1):acquire() end))
  end)
end)

describe("tether.Event", function()
  it("wakes every waiter, in FIFO order, and stays set", function()
    local order = {}
    in_group(function(g)
      local ev = tether.Event()
      for i = 1, 5 do g:spawn(function() ev:wait(); order[#order + 1] = i end) end
      wait_until(function() return tether.dump():find("waits on event", 1, true) ~= nil end)
      assert.is_false(ev:is_set())
      ev:set()
      ev:set()
      assert.is_true(ev:is_set())
      ev:wait()
    end)
    assert.are.same({ 1, 2, 3, 4, 5 }, order)
  end)

  it("a cancelled wait is woken and raises Cancelled", function()
    in_group(function(g)
      local ev = tether.Event()
      local t = g:spawn(function() ev:wait() end)
      wait_until(function() return tether.dump():find("waits on event", 1, true) ~= nil end)
      t:cancel()
      t:wait()
      assert.is_true(t:cancelled())
    end)
  end)

  it("rejects unknown options and bad self", function()
    assert.matches("unknown option 'nmae'", msg_of(function() tether.Event({ nmae = "x" }) end))
    assert.matches("bad self for 'ev:set'", msg_of(function() tether.Event().set(3) end))
    assert.matches("tether.Event %(event 'e'%)", tostring(tether.Event({ name = "e" })))
  end)
end)

describe("tether.Lock", function()
  it("serialises its holders in FIFO order", function()
    local order, inside, most = {}, 0, 0
    in_group(function(g)
      local lk = tether.Lock()
      for i = 1, 6 do
        g:spawn(function()
          local _ <close> = lk:acquire()
          inside = inside + 1
          most = math.max(most, inside)
          order[#order + 1] = i
          tether.checkpoint()
          tether.checkpoint()
          inside = inside - 1
        end)
      end
    end)
    assert.are.same({ 1, 2, 3, 4, 5, 6 }, order)
    assert.are.equal(1, most)
  end)

  it("acquire returns a guard that releases at <close>, only if still held", function()
    tether.run(function()
      local lk = tether.Lock()
      do
        local held <close> = lk:acquire()
        assert.are.equal(lk, held)
        assert.is_true(lk:locked())
      end
      assert.is_false(lk:locked())
      do
        local _ <close> = lk:acquire()
        lk:release()                         -- released by hand: the guard does nothing
        assert.is_false(lk:locked())
      end
      assert.is_false(lk:locked())
    end)
  end)

  it("a guard closed in another task while someone else holds the lock does not release it", function()
    in_group(function(g)
      local lk = tether.Lock()
      lk:acquire()
      g:spawn(function()
        local _ <close> = lk                 -- not its lock
      end):wait()
      assert.is_true(lk:locked())
      lk:release()
    end)
  end)

  it("is owned: release from another task, releasing twice, acquiring twice are clear errors", function()
    in_group(function(g)
      local lk = tether.Lock()
      lk:acquire()
      assert.matches("lk:acquire: the lock is already held by this task", msg_of(function() lk:acquire() end))
      assert.matches("already held", msg_of(function() lk:acquire_nowait() end))
      local e
      g:spawn(function() e = msg_of(function() lk:release() end) end):wait()
      assert.matches("lk:release: the lock is held by another task", e)
      lk:release()
      assert.matches("lk:release: the lock is not held", msg_of(function() lk:release() end))
    end)
    assert.matches("the lock is not held", msg_of(function() tether.Lock():release() end))
  end)

  it("acquire_nowait raises tether.WouldBlock while held", function()
    in_group(function(g)
      local lk = tether.Lock()
      lk:acquire()
      g:spawn(function()
        local e = error_of(function() lk:acquire_nowait() end)
        assert.is_true(tether.WouldBlock:is(e))
        assert.is_true(tether.Error:is(e))
      end):wait()
      lk:release()
    end)
  end)

  it("a cancelled acquire holds nothing and leaves the queue", function()
    in_group(function(g)
      local lk = tether.Lock()
      lk:acquire()
      local got = {}
      local a = g:spawn(function() lk:acquire(); got[#got + 1] = "a"; lk:release() end)
      local b = g:spawn(function() lk:acquire(); got[#got + 1] = "b"; lk:release() end)
      wait_until(function() local _, n = tether.dump():gsub("acquire of lock", ""); return n == 2 end)
      a:cancel()
      a:wait()
      assert.is_true(a:cancelled())
      lk:release()                            -- goes to b, not to the cancelled a
      b:wait()
      assert.are.same({ "b" }, got)
      assert.is_false(lk:locked())
    end)
  end)

  it("a waiter handed the lock and cancelled in the same tick returns holding it, then raises at its next checkpoint", function()
    in_group(function(g)
      local lk = tether.Lock()
      lk:acquire()
      local steps = {}
      local w = g:spawn(function()
        local _ <close> = lk:acquire()
        steps[#steps + 1] = "acquired"
        assert.is_true(lk:locked())
        local ok, e = pcall(tether.checkpoint)
        steps[#steps + 1] = (not ok and is_cancelled(e)) and "cancelled" or "not cancelled"
        error(e, 0)
      end)
      wait_until(function() return tether.dump():find("acquire of lock", 1, true) ~= nil end)
      lk:release()                            -- hands the lock to w ...
      w:cancel()                              -- ... which is cancelled before it runs
      w:wait()
      assert.are.same({ "acquired", "cancelled" }, steps)
      assert.is_true(w:cancelled())
      assert.is_false(lk:locked())            -- w's guard released it while unwinding
      lk:acquire()
      lk:release()
    end)
  end)
end)

describe("tether.Semaphore", function()
  it("admits at most n at once, FIFO, and sem.value counts the free units", function()
    local inside, most, order = 0, 0, {}
    in_group(function(g)
      local sem = tether.Semaphore(2)
      assert.are.equal(2, sem.value)
      for i = 1, 7 do
        g:spawn(function()
          local _ <close> = sem:acquire()
          order[#order + 1] = i
          inside = inside + 1
          most = math.max(most, inside)
          tether.checkpoint(); tether.checkpoint()
          inside = inside - 1
        end)
      end
      wait_until(function() return sem.value == 0 end)
    end)
    assert.are.equal(2, most)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7 }, order)
  end)

  it("its guard releases only what it still holds", function()
    tether.run(function()
      local sem = tether.Semaphore(1)
      do
        local gd <close> = sem:acquire()
        assert.are.equal(0, sem.value)
        gd:release()
        assert.are.equal(1, sem.value)
      end
      assert.are.equal(1, sem.value)            -- not released twice
    end)
  end)

  it("max_value bounds release; bad arguments are clear errors", function()
    local sem = tether.Semaphore(1, { max_value = 1, name = "s" })
    assert.are.equal(1, sem.max_value)
    assert.matches("exceed max_value", msg_of(function() sem:release() end))
    assert.matches("bad argument #1 to 'tether.Semaphore'", msg_of(function() tether.Semaphore(-1) end))
    assert.matches("bad argument #1 to 'tether.Semaphore'", msg_of(function() tether.Semaphore(1.5) end))
    assert.matches("bad argument #1 to 'tether.Semaphore'", msg_of(function() tether.Semaphore("2") end))
    assert.matches("unknown option", msg_of(function() tether.Semaphore(1, { max = 2 }) end))
    local s2 = tether.Semaphore(0)
    assert.is_true(tether.WouldBlock:is(error_of(function() s2:acquire_nowait() end)))
  end)

  it("a unit handed to a waiter cancelled in the same tick is kept, then released by its guard", function()
    in_group(function(g)
      local sem = tether.Semaphore(1)
      local held = sem:acquire()
      local got = 0
      local w = g:spawn(function()
        local _ <close> = sem:acquire()
        got = got + 1
        tether.checkpoint()
      end)
      wait_until(function() return tether.dump():find("acquire of semaphore", 1, true) ~= nil end)
      held:release()
      w:cancel()
      w:wait()
      assert.are.equal(1, got)
      assert.are.equal(1, sem.value)
    end)
  end)

  it("a cancelled acquire holds nothing", function()
    in_group(function(g)
      local sem = tether.Semaphore(0)
      local w = g:spawn(function() sem:acquire() end)
      wait_until(function() return tether.dump():find("acquire of semaphore", 1, true) ~= nil end)
      w:cancel()
      w:wait()
      sem:release()
      assert.are.equal(1, sem.value)
    end)
  end)
end)

describe("tether.CapacityLimiter", function()
  it("lends one token per task; borrowed, available and total", function()
    in_group(function(g)
      local lim = tether.CapacityLimiter(2, { name = "pool" })
      assert.are.equal(2, lim.total)
      assert.are.equal(2, lim.available)
      local _ <close> = lim:acquire()
      assert.are.equal(1, lim.borrowed)
      assert.are.equal(1, lim.available)
      assert.matches("already holds a token", msg_of(function() lim:acquire() end))
      local e
      g:spawn(function() e = msg_of(function() lim:release() end) end):wait()
      assert.matches("lim:release: this task holds no token", e)
    end)
  end)

  it("growing total wakes waiters in FIFO order; shrinking it holds new ones back", function()
    local order = {}
    in_group(function(g)
      local lim = tether.CapacityLimiter(1)
      local first = lim:acquire()
      for i = 1, 4 do
        g:spawn(function()
          local _ <close> = lim:acquire()
          order[#order + 1] = i
          tether.sleep_forever()
        end)
      end
      wait_until(function() local _, n = tether.dump():gsub("acquire of capacity limiter", ""); return n == 4 end)
      lim.total = 3
      wait_until(function() return #order == 2 end)
      assert.are.same({ 1, 2 }, order)
      assert.are.equal(3, lim.borrowed)
      lim.total = 1
      first:release()
      for _ = 1, 5 do tether.checkpoint() end
      assert.are.same({ 1, 2 }, order)        -- 2 still borrowed > total 1
      assert.are.equal(0, lim.available)
      lim.total = math.huge
      wait_until(function() return #order == 4 end)
      assert.are.same({ 1, 2, 3, 4 }, order)
      assert.are.equal(math.huge, lim.available)
      g:cancel()
    end)
  end)

  it("total must be an integer >= 1 or math.huge; other fields are read-only", function()
    local lim = tether.CapacityLimiter(1)
    assert.matches("lim.total", msg_of(function() lim.total = 0 end))
    assert.matches("lim.total", msg_of(function() lim.total = 1.5 end))
    assert.matches("cannot be set", msg_of(function() lim.borrowed = 3 end))
    assert.matches("bad argument #1 to 'tether.CapacityLimiter'", msg_of(function() tether.CapacityLimiter(0) end))
    assert.are.equal(math.huge, tether.CapacityLimiter(math.huge).total)
  end)

  it("a cancelled acquire holds nothing; a token handed in the same tick as the cancel is kept and released", function()
    in_group(function(g)
      local lim = tether.CapacityLimiter(1)
      lim:acquire()
      local a = g:spawn(function() lim:acquire() end)
      local got = 0
      local b = g:spawn(function() local _ <close> = lim:acquire(); got = got + 1; tether.checkpoint() end)
      wait_until(function() local _, n = tether.dump():gsub("acquire of capacity limiter", ""); return n == 2 end)
      a:cancel()
      a:wait()
      lim:release()                           -- to b
      b:cancel()
      b:wait()
      assert.are.equal(1, got)
      assert.are.equal(0, lim.borrowed)
      assert.is_true(a:cancelled() and b:cancelled())
    end)
  end)
end)

describe("tether.Condition", function()
  it("has a lock (a new one, or the one given); wait and notify need it held", function()
    tether.run(function()
      local lk = tether.Lock()
      local c1, c2 = tether.Condition(), tether.Condition(lk, { name = "c" })
      assert.is_true(tostring(c1.lock):find("tether.Lock", 1, true) ~= nil)
      assert.are.equal(lk, c2.lock)
      assert.matches("cond:wait: the calling task must hold cond.lock", msg_of(function() c1:wait() end))
      assert.matches("cond:notify: the calling task must hold cond.lock", msg_of(function() c1:notify() end))
      assert.matches("cond:notify_all", msg_of(function() c1:notify_all() end))
      assert.matches("tether.Lock expected", msg_of(function() tether.Condition(tether.Event()) end))
    end)
  end)

  it("notify(n) wakes n waiters in FIFO order, each returning with the lock", function()
    local order = {}
    in_group(function(g)
      local cond = tether.Condition()
      for i = 1, 5 do
        g:spawn(function()
          local _ <close> = cond.lock:acquire()
          cond:wait()
          assert.is_true(cond.lock:locked())
          order[#order + 1] = i
        end)
      end
      wait_until(function() local _, n = tether.dump():gsub("waits on condition", ""); return n == 5 end)
      do
        local _ <close> = cond.lock:acquire()
        cond:notify(2)
      end
      wait_until(function() return #order == 2 end)
      do
        local _ <close> = cond.lock:acquire()
        cond:notify_all()
      end
    end)
    assert.are.same({ 1, 2, 3, 4, 5 }, order)
  end)

  it("a cancelled wait raises holding the lock again, re-acquired shielded", function()
    in_group(function(g)
      local cond = tether.Condition()
      local held_when_raised
      local w = g:spawn(function()
        local _ <close> = cond.lock:acquire()
        local ok, e = pcall(cond.wait, cond)
        held_when_raised = not ok and is_cancelled(e) and cond.lock:locked()
        error(e, 0)
      end)
      wait_until(function() return tether.dump():find("waits on condition", 1, true) ~= nil end)
      cond.lock:acquire()                     -- w must wait for it after its cancel
      w:cancel()
      for _ = 1, 3 do tether.checkpoint() end
      assert.is_truthy(tether.dump():find("re-acquire of lock", 1, true))
      assert.is_false(w:done())
      cond.lock:release()
      w:wait()
      assert.is_true(held_when_raised)
      assert.is_false(cond.lock:locked())
    end)
  end)

  it("a notified waiter cancelled before it has the lock back returns normally (the notification is not lost)", function()
    in_group(function(g)
      local cond = tether.Condition()
      local woke
      local w = g:spawn(function()
        local _ <close> = cond.lock:acquire()
        cond:wait()
        woke = true
        tether.checkpoint()
      end)
      wait_until(function() return tether.dump():find("waits on condition", 1, true) ~= nil end)
      cond.lock:acquire()
      cond:notify()
      w:cancel()
      cond.lock:release()
      w:wait()
      assert.is_true(woke)
      assert.is_true(w:cancelled())
    end)
  end)
end)

describe("blocked on a primitive", function()
  it("tether.dump() names what each task waits on, with the object's name", function()
    local text
    in_group(function(g)
      local ev, lk, sem = tether.Event({ name = "ready" }), tether.Lock({ name = "db" }), tether.Semaphore(0, { name = "slots" })
      lk:acquire()
      g:spawn(function() ev:wait() end)
      g:spawn(function() lk:acquire() end)
      g:spawn(function() sem:acquire() end)
      wait_until(function() local _, n = tether.dump():gsub("waits on", ""); return n == 3 end)
      text = tether.dump()
      g:cancel()
    end)
    assert.matches("waits on event 'ready' at ", text)
    assert.matches("waits on acquire of lock 'db' at ", text)
    assert.matches("waits on acquire of semaphore 'slots' at ", text)
  end)

  it("counts as blocked for deadlock detection", function()
    local cleaned = 0
    local ok, err = pcall(tether.run, function()
      tether.with_group(function(g)
        local lk, ev = tether.Lock(), tether.Event()
        g:spawn(function()
          local _ <close> = setmetatable({}, { __close = function() cleaned = cleaned + 1 end })
          ev:wait()
        end)
        lk:acquire()
        g:spawn(function()
          local _ <close> = setmetatable({}, { __close = function() cleaned = cleaned + 1 end })
          lk:acquire()
        end)
      end)
    end)
    assert.is_false(ok)
    assert.matches("deadlock", tostring(err))
    assert.are.equal(2, cleaned)
  end)

  it("a Lock that outlives a run abandoned in a shielded wait is still usable", function()
    local lk = tether.Lock()
    local ok, err = pcall(tether.run, function()
      tether.with_group(function(g)
        lk:acquire()
        g:spawn(function() tether.shield(function() lk:acquire() end) end)
        tether.shield(tether.Event().wait, tether.Event())
      end)
    end)
    assert.is_false(ok)
    assert.matches("deadlock", tostring(err))
    collectgarbage(); collectgarbage()
    tether.run(function()
      assert.is_true(lk:locked())            -- its holder was abandoned
      local ev = tether.Event()
      ev:set()
      ev:wait()
    end)
  end)
end)
