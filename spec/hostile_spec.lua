-- Hostile input: error objects that fight back, handlers and cleanup that raise, yields where none can happen, user coroutines, deep nesting, huge groups, busy tasks, GC everywhere, dropped handles.
--
-- Slow cases (1,000,000 tasks) are tagged #slow and run only with
-- TETHER_SLOW=1 (e.g. `TETHER_SLOW=1 busted --lua=lua5.4 -t slow spec/hostile_spec.lua`).
local tether = require("tether")

local SLOW = os.getenv("TETHER_SLOW") == "1"

local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, got success")
  return err
end

local function leaves(e, out)
  out = out or { n = 0 }
  if tether.ErrorGroup:is(e) then
    for i = 1, e.errors.n do leaves(e.errors[i], out) end
  else
    out.n = out.n + 1
    out[out.n] = e
  end
  return out
end

local function contains(list, v)
  for i = 1, list.n or #list do if rawequal(list[i], v) then return true end end
  return false
end

local function heap()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count")
end

local function assert_idle()
  local s = tether.stats()
  assert.are.same({ tasks = 0, handles = 0, timers = 0, running = false },
    { tasks = s.tasks, handles = s.handles, timers = s.timers, running = s.running })
end

-- Error objects whose __tostring raises, or returns something that is not a string.
local function hostile_objects()
  return {
    raises = setmetatable({ kind = "raises" }, { __tostring = function() error("TOSTRING-BOOM") end }),
    table = setmetatable({ kind = "table" }, { __tostring = function() return {} end }),
    none = setmetatable({ kind = "none" }, { __tostring = function() end }),
    yields = setmetatable({ kind = "yields" }, { __tostring = function() coroutine.yield() return "y" end }),
  }
end

describe("error objects whose __tostring raises or returns a non-string", function()
  it("tostring(ErrorGroup) still renders every other leaf, the hostile ones as a placeholder", function()
    local h = hostile_objects()
    local text
    tether.run(function()
      local eg = tether.ErrorGroup("outer", {
        "good-1", h.raises, tether.ErrorGroup("inner", { h.table, "good-2", h.none }), h.yields, "good-3",
      })
      text = tostring(eg)
    end)
    assert.is_string(text)
    for _, s in ipairs { "good-1", "good-2", "good-3", "outer", "inner" } do
      assert.truthy(text:find(s, 1, true), s .. " is missing from:\n" .. text)
    end
    assert.falsy(text:find("TOSTRING-BOOM", 1, true))
  end)

  it("an ErrorGroup whose message is hostile still renders", function()
    local h = hostile_objects()
    local eg = tether.ErrorGroup("m", { "leaf-1" })
    eg.message = h.raises
    local text = tostring(eg)
    assert.truthy(text:find("leaf-1", 1, true))
  end)

  it("a group of hostile errors raised by tasks reaches the top intact and prints", function()
    local h = hostile_objects()
    local err = error_of(tether.run, function()
      tether.with_group({ policy = "supervisor" }, function(g)
        g:spawn(function() error(h.raises) end)
        g:spawn(function() tether.checkpoint(); error(h.table) end)
        g:spawn(function() tether.checkpoint(); error("plain", 0) end)
      end)
    end)
    assert.is_true(tether.ErrorGroup:is(err))
    local lv = leaves(err)
    assert.are.equal(3, lv.n)
    assert.is_true(contains(lv, h.raises))
    assert.is_true(contains(lv, h.table))
    assert.truthy(tostring(err):find("plain", 1, true))
  end)

  it("pattern matchers treat a leaf whose __tostring fails as not matching, and lose nothing", function()
    local h = hostile_objects()
    local match, rest
    tether.run(function()
      local eg = tether.ErrorGroup("g", { "net: down", h.raises, h.table, "net: slow", h.none })
      match, rest = eg:split("^net")
    end)
    local m, r = leaves(match), leaves(rest)
    assert.are.equal(2, m.n)
    assert.are.equal(3, r.n)
    for _, o in pairs(h) do
      if o ~= h.yields then assert.is_true(contains(r, o), o.kind .. " was lost") end
    end
  end)

  it("catch with pattern handlers raises the hostile leaves again, unchanged", function()
    local h = hostile_objects()
    local handled
    local err = error_of(tether.run, function()
      tether.catch(function()
        tether.with_group(function(g)
          g:spawn(function() error(h.raises) end)
          g:spawn(function() error("timeout: db", 0) end)
        end)
      end, { { "^timeout", function(eg) handled = eg end } })
    end)
    assert.are.equal(1, handled.errors.n)
    local lv = leaves(err)
    assert.are.equal(1, lv.n)
    assert.is_true(rawequal(lv[1], h.raises))
  end)

  it("predicate matchers get the hostile object itself", function()
    local h = hostile_objects()
    local seen = {}
    tether.run(function()
      local eg = tether.ErrorGroup("g", { h.raises, h.table })
      local m = eg:subgroup(function(e) seen[#seen + 1] = e; return e.kind == "table" end)
      assert.is_true(rawequal(m.errors[1], h.table))
    end)
    assert.is_true(rawequal(seen[1], h.raises))
    assert.is_true(rawequal(seen[2], h.table))
  end)

  it("t:result on a task that failed with such an error raises a clear error naming the task", function()
    local h = hostile_objects()
    for _, name in ipairs { "raises", "table", "none" } do
      local t
      local e1 = error_of(tether.run, function()
        tether.with_group(function(g)
          t = g:spawn({ name = "hostile-" .. name }, function() error(h[name]) end)
        end)
      end)
      assert.is_true(tether.ErrorGroup:is(e1))
      assert.is_true(rawequal(t:error(), h[name]))
      assert.is_true(t:failed())
      local e2 = error_of(t.result, t)
      local msg = type(e2) == "table" and e2.message or e2
      assert.is_string(msg, name .. ": t:result raised a " .. type(msg) .. " message")
      assert.truthy(msg:find("t:result: task 'hostile-" .. name .. "' failed", 1, true),
        name .. ": t:result raised " .. tostring(msg))
    end
  end)
end)

describe("handlers and cleanup code that raise", function()
  it("a catch handler that raises: its error comes first, then the leaves no handler took", function()
    local err = error_of(tether.run, function()
      tether.catch(function()
        tether.with_group({ name = "g" }, function(g)
          g:spawn(function() error("A", 0) end)
          g:spawn(function() error("B", 0) end)
        end)
      end, { { "^A", function() error("HANDLER", 0) end } })
    end)
    assert.is_true(tether.ErrorGroup:is(err))
    assert.are.equal(2, err.errors.n)
    assert.are.equal("HANDLER", err.errors[1])
    assert.is_true(tether.ErrorGroup:is(err.errors[2]))
    assert.are.equal("errors in task group 'g'", err.errors[2].message)
    assert.are.same({ "B" }, { table.unpack(leaves(err.errors[2]), 1, 1) })
  end)

  it("a predicate matcher that raises: its error is raised with every leaf, none lost", function()
    local err = error_of(tether.run, function()
      tether.catch(function()
        tether.with_group(function(g) g:spawn(function() error("A", 0) end) end)
      end, { { function() error("PRED", 0) end, function() error("never called") end } })
    end)
    local lv = leaves(err)
    assert.are.equal(2, lv.n)
    assert.are.equal("PRED", lv[1])
    assert.are.equal("A", lv[2])
  end)

  it("an error in __close while g:cancel unwinds a task is reported by the group", function()
    local others_closed = 0
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn(function()
          local _ <close> = setmetatable({}, { __close = function(_, e)
            assert(tether.Cancelled:is(e))
            error("CLOSE-ERR", 0)
          end })
          tether.sleep(10)
        end)
        for _ = 1, 3 do
          g:spawn(function()
            local _ <close> = setmetatable({}, { __close = function() others_closed = others_closed + 1 end })
            tether.sleep(10)
          end)
        end
        tether.sleep(0.005)
        g:cancel("stop")
      end)
    end)
    assert.are.same({ "CLOSE-ERR" }, { table.unpack(leaves(err), 1, leaves(err).n) })
    assert.are.equal(3, others_closed)
  end)

  it("an error in __close while a failing sibling cancels the group: both are reported", function()
    local err = error_of(tether.run, function()
      tether.with_group(function(g)
        g:spawn(function()
          local _ <close> = setmetatable({}, { __close = function() error("CLOSE-ERR", 0) end })
          tether.sleep(10)
        end)
        g:spawn(function() tether.sleep(0.002); error("SIBLING", 0) end)
      end)
    end)
    local lv = leaves(err)
    table.sort(lv)
    assert.are.same({ "CLOSE-ERR", "SIBLING" }, { lv[1], lv[2] })
  end)

  it("an error in __close while a deadline unwinds: move_on_after raises it instead of returning false", function()
    local err = error_of(tether.run, function()
      tether.move_on_after(0.002, function()
        local _ <close> = setmetatable({}, { __close = function() error("CLOSE-ERR", 0) end })
        tether.sleep(10)
      end)
    end)
    assert.are.equal("CLOSE-ERR", err)
  end)

  it("__close may block while a cancellation unwinds (shielded), and the group waits for it", function()
    local log = {}
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function()
          local _ <close> = setmetatable({}, { __close = function()
            local ok, e = pcall(tether.sleep, 0.001)
            log[#log + 1] = ok and "slept" or tostring(e.reason)
            tether.shield(tether.sleep, 0.002)
            log[#log + 1] = "cleaned up"
          end })
          tether.sleep(10)
        end)
        tether.checkpoint()
        g:cancel("stop")
      end)
      log[#log + 1] = "group exited"
    end)
    assert.are.same({ "stop", "cleaned up", "group exited" }, log)
  end)
end)

describe("blocking where no yield can happen", function()
  local ops = {
    ["tether.sleep"] = function() tether.sleep(0.001) end,
    ["tether.checkpoint"] = function() tether.checkpoint() end,
    ["tether.with_group"] = function() tether.with_group(function() end) end,
    ["tether.move_on_after"] = function() tether.move_on_after(1, function() end) end,
    ["tether.sleep_forever"] = function() tether.sleep_forever() end,
  }

  it("inside a table.sort comparator: a clear error naming the operation, the scheduler unharmed", function()
    local got = {}
    local other_ran = false
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function() tether.sleep(0.002); other_ran = true end)
        for name, op in pairs(ops) do
          local err = error_of(table.sort, { 3, 1, 2 }, function(a, b) op(); return a < b end)
          got[name] = err
        end
      end)
    end)
    for name in pairs(ops) do
      assert.truthy(tostring(got[name]):find(name .. ": cannot block here", 1, true), tostring(got[name]))
    end
    assert.is_true(other_ran)
  end)

  it("inside a string.gsub callback: a clear error naming the operation", function()
    tether.run(function()
      tether.with_group(function(g)
        local t = g:spawn(tether.sleep, 0.001)
        local err = error_of(string.gsub, "abc", "%w", function(c) t:wait(); return c end)
        assert.truthy(tostring(err):find("t:wait: cannot block here", 1, true), tostring(err))
        err = error_of(string.gsub, "abc", "%w", function(c) tether.sleep(0); return c end)
        assert.truthy(tostring(err):find("tether.sleep: cannot block here", 1, true), tostring(err))
      end)
    end)
  end)

  it("a plain coroutine.yield inside a comparator is Lua's own error, and the task goes on", function()
    local after = false
    tether.run(function()
      local err = error_of(table.sort, { 3, 1, 2 }, function(a, b) coroutine.yield(); return a < b end)
      assert.truthy(tostring(err):find("yield across", 1, true), tostring(err))
      tether.sleep(0.001)
      after = true
    end)
    assert.is_true(after)
  end)

  it("inside a __gc finalizer that runs during a task: a clear error, no crash", function()
    local msg
    tether.run(function()
      do
        local _ = setmetatable({}, { __gc = function()
          local ok, e = pcall(tether.sleep, 0)
          msg = ok and "slept?!" or e
        end })
      end
      collectgarbage()
      collectgarbage()
      tether.checkpoint()
    end)
    assert.truthy(tostring(msg):find("tether.sleep: cannot block here", 1, true), tostring(msg))
  end)
end)

describe("a user coroutine inside a task", function()
  it("calling a blocking operation gets a clear error naming it", function()
    local got = {}
    tether.run(function()
      tether.with_group(function(g)
        local t = g:spawn(tether.sleep, 0.002)
        local cases = {
          ["tether.sleep"] = function() return tether.sleep(0.001) end,
          ["tether.checkpoint"] = function() return tether.checkpoint() end,
          ["tether.with_group"] = function() return tether.with_group(function() end) end,
          ["tether.move_on_after"] = function() return tether.move_on_after(1, function() end) end,
          ["tether.fail_after"] = function() return tether.fail_after(1, function() end) end,
          ["t:wait"] = function() return t:wait() end,
          ["g:start"] = function() return g:start(function(started) started() end) end,
        }
        for name, fn in pairs(cases) do
          local ok, err = coroutine.wrap(function() return pcall(fn) end)()
          assert.is_false(ok, name .. " did not raise")
          got[name] = tostring(err)
        end
      end)
    end)
    for name, msg in pairs(got) do
      assert.truthy(msg:find(name .. ": called from a coroutine that tether does not manage", 1, true), msg)
    end
  end)

  it("may spawn (spawning never blocks): the task joins the group", function()
    local ran = false
    tether.run(function()
      tether.with_group(function(g)
        local t = coroutine.wrap(function() return g:spawn(function() tether.checkpoint(); ran = true end) end)()
        assert.are.equal("tether.Task", tostring(t):match("^tether%.Task"))
      end)
    end)
    assert.is_true(ran)
  end)

  it("yielding inside its own coroutine is the user's business, tether is not involved", function()
    local seen = {}
    tether.run(function()
      local co = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
      for _ = 1, 3 do seen[#seen + 1] = co(); tether.checkpoint() end
    end)
    assert.are.same({ 1, 2, 3 }, seen)
  end)

  it("resuming a blocked task's coroutine by hand does not crash tether or leave anything alive", function()
    for _, how in ipairs { "sleep", "wait", "join", "checkpoint" } do
      local co
      pcall(tether.run, function()
        tether.with_group(function(g)
          g:spawn(function()
            co = coroutine.running()
            if how == "sleep" then tether.sleep(0.02)
            elseif how == "wait" then g:spawn(tether.sleep, 0.02):wait()
            elseif how == "join" then tether.with_group(function(g2) g2:spawn(tether.sleep, 0.02) end)
            else for _ = 1, 5 do tether.checkpoint() end end
          end)
          tether.checkpoint()
          pcall(coroutine.resume, co)
          pcall(coroutine.resume, co)
        end)
      end)
      assert_idle()
      assert.are.equal("fine", tether.run(function() tether.sleep(0.001); return "fine" end), how)
    end
  end)
end)

describe("deep nesting", function()
  it("10,000 nested with_groups in one task work, or fail with a clear error at the C-stack limit", function()
    local depth = 0
    local function nest(n)
      if n == 0 then return "bottom" end
      return tether.with_group(function()
        depth = depth + 1
        return nest(n - 1)
      end)
    end
    local ok, err = pcall(tether.run, function() return nest(10000) end)
    if ok then
      assert.are.equal(10000, depth)
    else
      local lv = leaves(err)
      assert.are.equal(1, lv.n, "one error, wrapped once per level")
      assert.truthy(tostring(lv[1]):find("stack overflow", 1, true), tostring(lv[1]))
      assert.is_true(depth > 100)
    end
    assert_idle()
    assert.are.equal("fine", tether.run(function() return "fine" end))
  end)

  it("10,000 groups nested through tasks (each level a new task) work", function()
    local depth = 0
    local function nest(n)
      if n == 0 then tether.sleep(0.001); return end
      tether.with_group(function(g)
        depth = depth + 1
        g:spawn(nest, n - 1)
      end)
    end
    tether.run(function() nest(10000) end)
    assert.are.equal(10000, depth)
  end)

  it("an error 2,000 groups deep comes back nested 2,000 deep, and prints", function()
    local function nest(n)
      if n == 0 then error("DEEP", 0) end
      tether.with_group(function(g) g:spawn(nest, n - 1) end)
    end
    local err = error_of(tether.run, function() nest(2000) end)
    local lv = leaves(err)
    assert.are.equal(1, lv.n)
    assert.are.equal("DEEP", lv[1])
    local levels, e = 0, err
    while tether.ErrorGroup:is(e) do levels, e = levels + 1, e.errors[1] end
    assert.are.equal(2000, levels)
    assert.is_string(tostring(err))
  end)
end)

describe("many tasks in one group", function()
  it("100,000 tasks spawned without yielding (all alive at once) all run and finish", function()
    local n = 0
    tether.run(function()
      tether.with_group(function(g)
        local f = function() n = n + 1 end
        for _ = 1, 100000 do g:spawn(f) end
      end)
    end)
    assert.are.equal(100000, n)
  end)

  local function million(batch)
    local n = 0
    tether.run(function()
      tether.with_group(function(g)
        local f = function() n = n + 1 end
        for i = 1, 1000000 do
          g:spawn(f)
          if batch and i % batch == 0 then tether.checkpoint() end
        end
      end)
    end)
    assert.are.equal(1000000, n)
    assert.is_true(heap() < 2048, "the heap stays big after the tasks finished")
  end

  if SLOW then
    it("1,000,000 tasks in one group, spawned 1,000 per tick #slow", function() million(1000) end)
    it("1,000,000 tasks in one group, all alive at once (about 1.3 GB) #slow", function() million(nil) end)
  else
    pending("1,000,000 tasks in one group #slow (TETHER_SLOW=1 runs it)")
  end
end)

describe("cooperative scheduling", function()
  it("a task that never yields holds up every other task and timer until it does", function()
    local log = {}
    tether.run(function()
      tether.with_group(function(g)
        g:spawn(function()
          log[#log + 1] = "busy: start"
          local t0 = os.clock()
          while os.clock() - t0 < 0.05 do end -- 50 ms of CPU, no checkpoint
          log[#log + 1] = "busy: end"
          tether.checkpoint()
          log[#log + 1] = "busy: after its checkpoint"
        end)
        g:spawn(function()
          log[#log + 1] = "other: start"
          tether.checkpoint()
          log[#log + 1] = "other: after a checkpoint"
        end)
        g:spawn(function()
          tether.sleep(0.001) -- due long before the busy task ends
          log[#log + 1] = "sleeper: woke"
        end)
      end)
    end)
    assert.are.same({
      "busy: start", "busy: end", "other: start", "busy: after its checkpoint", "other: after a checkpoint",
      "sleeper: woke",
    }, log)
  end)
end)

describe("collectgarbage called in the middle of everything", function()
  for _, mode in ipairs { "incremental", "generational" } do
    it("in tasks, catch handlers, __close and finalizers (" .. mode .. " mode): results intact", function()
      local old = collectgarbage(mode)
      local finalized, handled, closed = 0, 0, 0
      tether.run(function()
        for round = 1, 3 do
          tether.catch(function()
            tether.with_group({ policy = round == 2 and "supervisor" or nil }, function(g)
              for i = 1, 100 do
                g:spawn(function()
                  setmetatable({}, { __gc = function()
                    finalized = finalized + 1
                    collectgarbage("step")
                  end })
                  local _ <close> = setmetatable({}, { __close = function()
                    closed = closed + 1
                    collectgarbage()
                  end })
                  collectgarbage("step")
                  tether.checkpoint()
                  if i % 25 == 0 then collectgarbage() end
                  if round ~= 3 and i % 50 == 0 then error("E" .. i, 0) end
                  tether.sleep(0)
                end)
              end
              collectgarbage()
            end)
          end, { { "^E", function(eg)
            collectgarbage()
            handled = handled + leaves(eg).n
          end } })
        end
      end)
      collectgarbage()
      collectgarbage()
      collectgarbage(old)
      assert.are.equal(300, closed)
      assert.are.equal(300, finalized)
      assert.is_true(handled >= 1 and handled <= 4)
    end)
  end
end)

describe("dropping group and task handles early", function()
  it("task handles kept only in a weak table are collected after their group exits", function()
    local weak = setmetatable({}, { __mode = "v" })
    local base = heap()
    tether.run(function()
      tether.with_group(function(g)
        weak.group = g
        for i = 1, 5000 do
          weak[i] = g:spawn(function() tether.checkpoint(); return ("x"):rep(200) .. i end)
        end
        collectgarbage() -- the tasks are still alive: tether anchors them, not the handles
        local alive = 0
        for i = 1, 5000 do if weak[i] then alive = alive + 1 end end
        assert.are.equal(5000, alive)
      end)
    end)
    heap()
    assert.is_nil(next(weak), "a handle survived")
    weak = nil -- luacheck: ignore
    assert.is_true(heap() - base < 64, "the heap grew by " .. (heap() - base) .. " KB")
  end)

  it("tasks whose handles were dropped at once still run to the end, through full collections", function()
    local done = 0
    tether.run(function()
      tether.with_group(function(g)
        for _ = 1, 1000 do
          g:spawn(function()
            collectgarbage("step")
            tether.sleep(0)
            done = done + 1
          end)
        end
        for _ = 1, 5 do collectgarbage(); tether.checkpoint() end
      end)
    end)
    assert.are.equal(1000, done)
  end)

  it("a group handle kept after with_group returns is closed: spawn is a clear error, cancel a no-op", function()
    local stale
    tether.run(function()
      tether.with_group(function(g) stale = g end)
      collectgarbage()
      local err = error_of(stale.spawn, stale, function() end)
      assert.truthy(tostring(err):find("g:spawn: the task group is closed", 1, true), tostring(err))
      stale:cancel("late")
      assert.is_false(stale.cancel_called)
    end)
    stale = nil -- luacheck: ignore
    collectgarbage()
  end)

  it("cancel scopes dropped before, during and after running are collected without harm", function()
    local weak = setmetatable({}, { __mode = "v" })
    tether.run(function()
      weak[1] = tether.cancel_scope { timeout = 10 } -- never run
      local s = tether.cancel_scope { timeout = 0.001 }
      weak[2] = s
      assert.is_false(s:run(function()
        s = nil -- luacheck: ignore
        collectgarbage()
        tether.sleep(1)
      end))
      collectgarbage()
      tether.sleep(0.002)
    end)
    heap()
    assert.is_nil(next(weak))
  end)
end)
