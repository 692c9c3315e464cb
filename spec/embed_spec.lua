-- Embedding (contract §8): tether.launch, unhandled failures, sharing luv's loop, closing the state, the C host.
-- Cases that load luv run in a child lua5.4: once luv is loaded, every later run in
-- that process uses luv's loop, and the rest of the suite runs on the default one.
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path -- for require("support")
local support = require("support")

local error_of, run_lua = support.error_of, support.run_lua

-- Drives the loop (a tether.run of its own) until every task in `hs` is done,
-- without observing them (t:done() is not t:wait()).
local function drive(...)
  local hs = { ... }
  tether.run(function()
    for _, h in ipairs(hs) do
      while not h:done() do tether.sleep(0.001) end
    end
  end)
end

-- Sets an on_unhandled handler that records its calls for the length of fn().
local function with_handler(fn)
  local calls = {}
  local prev = tether.on_unhandled(function(e, t, tb)
    calls[#calls + 1] = { err = e, task = t, traceback = tb }
  end)
  local ok, err = pcall(fn, calls)
  tether.on_unhandled(prev)
  assert(ok, err)
  return calls
end

local function child_report(r)
  return ("exit %s\n--- stdout\n%s\n--- stderr\n%s"):format(tostring(r.status), r.out, r.err)
end

describe("tether.launch", function()
  it("returns the root's Task handle at once; the task runs when the loop runs", function()
    local log = {}
    local h = tether.launch(function(a, b)
      log[#log + 1] = "root " .. a
      tether.sleep(0.001)
      return a + b, nil, "c"
    end, 1, 2)
    assert.is_false(h:done())
    assert.same({}, log)
    assert.equal(1, tether.stats().roots)
    tether.run(function() h:wait() end)
    assert.same({ "root 1" }, log)
    assert.same({ 3, nil, "c", n = 3 }, table.pack(h:result()))
  end)

  it("takes options first: a name; unknown options and bad clocks are clear errors", function()
    local h = tether.launch({ name = "worker" }, function() return "w" end)
    assert.equal("worker", h.name)
    drive(h)
    assert.equal("w", h:result())
    local e = tostring(error_of(tether.launch, { nmae = "x" }, function() end))
    assert.matches("tether.launch", e, 1, true)
    assert.matches("unknown option 'nmae'", e, 1, true)
    e = tostring(error_of(tether.launch, { clock = "fast" }, function() end))
    assert.matches('"real" or "virtual"', e, 1, true)
    e = tostring(error_of(tether.launch, 42))
    assert.matches("bad argument #1", e, 1, true)
    e = tostring(error_of(tether.launch, {}))
    assert.matches("bad argument #2", e, 1, true)
    assert.equal(0, tether.stats().roots)
  end)

  it("shares the loop and the scheduler with tether.run: their tasks interleave", function()
    local log = {}
    local h = tether.launch(function()
      for i = 1, 3 do
        log[#log + 1] = "launched " .. i
        tether.sleep(0.002)
      end
    end)
    tether.run(function()
      for i = 1, 3 do
        log[#log + 1] = "run " .. i
        tether.sleep(0.002)
      end
      h:wait()
    end)
    assert.same({ "launched 1", "run 1", "launched 2", "run 2", "launched 3", "run 3" }, log)
  end)

  it("lets tether.run run while a launched root is live: run returns when its own root is done", function()
    local release
    local h = tether.launch(function()
      tether.await(function(done) release = done end)
      return "late"
    end)
    assert.equal("quick", tether.run(function() return "quick" end))
    assert.is_false(h:done())
    assert.is_true(tether.stats().running)
    assert.equal(1, tether.stats().roots)
    tether.run(function() release(); h:wait() end)
    assert.equal("late", h:result())
  end)

  it("from inside a task starts a root of its own, which outlives the task that launched it", function()
    local h, release
    tether.run(function()
      tether.move_on_after(0, function()   -- the scope that launches it is cancelled
        h = tether.launch(function()
          tether.await(function(done) release = done end)
          tether.checkpoint()
          return "survived"
        end)
        tether.checkpoint()
      end)
    end)
    assert.is_false(h:done())
    tether.run(function() release(); h:wait() end)
    assert.equal("survived", h:result())
  end)

  it("keeps the guarantees of a run: the root waits for its tasks, and each root has its outcome", function()
    local finished = 0
    local a = tether.launch(function()
      tether.with_group(function(g)
        for i = 1, 5 do g:spawn(function() tether.sleep(0.001 * i); finished = finished + 1 end) end
      end)
      return finished
    end)
    local b = tether.launch(function() tether.sleep(0.002); error("b failed", 0) end)
    local c = tether.launch(function() tether.sleep_forever() end)
    local calls = with_handler(function()
      tether.run(function()
        b:wait()
        a:wait()
        c:cancel()
        c:wait()
      end)
    end)
    assert.equal(5, a:result())
    assert.is_true(b:failed())
    assert.equal("b failed", b:error())
    assert.is_true(c:cancelled())
    assert.same({}, calls) -- b was waited for, c was cancelled: nothing unhandled
  end)

  it("closes the I/O objects a root's tasks left open when that root ends, while other roots go on", function()
    local streams
    local h = tether.launch(function()
      local a, b = tether.stream_pair()
      streams = { a, b }                     -- left open
      tether.checkpoint()
    end)
    local r = tether.run(function()
      while not h:done() do tether.sleep(0.001) end
      local ok, e = pcall(streams[1].write, streams[1], "x")
      return { ok = ok, closed = tether.ClosedResourceError:is(e), io = tether.stats().io }
    end)
    assert.same({ ok = false, closed = true, io = 0 }, r)
  end)

  it("shows every live root in tether.dump()", function()
    local h = tether.launch({ name = "background" }, tether.sleep, 0.01)
    local text = tether.run({ name = "foreground" }, function() return tether.dump() end)
    assert.matches("task 'background'", text, 1, true)
    assert.matches("task 'foreground'", text, 1, true)
    drive(h)
  end)
end)

describe("a launched root that fails", function()
  it("with nothing awaiting it goes to the on_unhandled handler, once, with the task and traceback", function()
    local boom = setmetatable({}, { __tostring = function() return "my boom" end })
    local h
    local calls = with_handler(function()
      h = tether.launch(function() tether.sleep(0.001); error(boom) end)
      drive(h)
      drive(tether.launch(tether.checkpoint)) -- later runs report nothing more
    end)
    assert.equal(1, #calls)
    assert.equal(boom, calls[1].err)
    assert.equal(h, calls[1].task)
    assert.matches("stack traceback", calls[1].traceback, 1, true)
  end)

  it("hands the handler an ErrorGroup whole: the tree of every failure under the root", function()
    local calls = with_handler(function()
      drive(tether.launch(function()
        tether.with_group(function(g)
          g:spawn({ name = "one" }, function() error("first", 0) end)
          g:spawn(function()
            tether.with_group(function(g2)
              g2:spawn({ name = "two" }, function() error("second", 0) end)
            end)
          end)
        end)
      end))
    end)
    assert.equal(1, #calls)
    local eg = calls[1].err
    assert.is_true(tether.ErrorGroup:is(eg))
    assert.same({ "first", "second" }, eg:leaves())
    assert.is_true(tether.ErrorGroup:is(eg.errors[2]))    -- nesting kept
    local text = tostring(eg)
    assert.matches("one", text, 1, true)
    assert.matches("two", text, 1, true)
  end)

  it("is not reported when t:wait(), t:result() or t:error() was called on it first", function()
    local calls = with_handler(function()
      local waited = tether.launch(function() tether.sleep(0.002); error("w") end)
      local asked = tether.launch(function() tether.sleep(0.002); error("a") end)
      local fetched = tether.launch(function() tether.sleep(0.002); error("f") end)
      assert.is_nil(asked:error())
      assert.is_false(pcall(fetched.result, fetched))
      tether.run(function() waited:wait() end)
      drive(asked, fetched)
    end)
    assert.same({}, calls)
  end)

  it("is not reported when cancelled (a cancellation is not a failure)", function()
    local calls = with_handler(function()
      local h = tether.launch(tether.sleep_forever)
      tether.run(function() tether.checkpoint(); h:cancel() end)
      drive(h)
      assert.is_true(h:cancelled())
    end)
    assert.same({}, calls)
  end)

  it("reports an ErrorGroup with its tree through the default handler, on stderr", function()
    local r = run_lua([[
      local tether = require("tether")
      tether.launch({ name = "jobs" }, function()
        tether.with_group(function(g)
          g:spawn(function() error("first job broke", 0) end)
          g:spawn(function() error("second job broke", 0) end)
        end)
      end)
      tether.run(function() tether.sleep(0.01) end)
      print("carried on")
    ]])
    assert.equal(0, r.status, child_report(r))
    assert.equal("carried on\n", r.out)
    assert.matches("tether: unhandled error in launched task 'jobs'", r.err, 1, true)
    assert.matches("first job broke", r.err, 1, true)
    assert.matches("second job broke", r.err, 1, true)
  end)

  it("still reaches stderr when the handler itself raises", function()
    local r = run_lua([[
      local tether = require("tether")
      tether.on_unhandled(function() error("handler broke", 0) end)
      tether.launch(function() error("the real failure", 0) end)
      tether.run(function() tether.sleep(0.01) end)
    ]])
    assert.equal(0, r.status, child_report(r))
    assert.matches("on_unhandled handler raised: handler broke", r.err, 1, true)
    assert.matches("the real failure", r.err, 1, true)
  end)

  it("on_unhandled returns the previous handler; nil restores the default; a non-function is an error", function()
    local f = function() end
    assert.is_nil(tether.on_unhandled(f))
    assert.equal(f, tether.on_unhandled(nil))
    assert.is_nil(tether.on_unhandled(nil))
    assert.matches("bad argument #1", tostring(error_of(tether.on_unhandled, 42)), 1, true)
  end)
end)

describe("which loop", function()
  local reg = debug.getregistry()

  -- Pretends that luv is loaded: a context userdata (io.stdout stands in: its
  -- first field is a non-NULL pointer, never used as a loop here) and a module.
  local function with_fake_luv(module, fn)
    local saved_ctx, saved_mod = reg.luv_context, package.loaded.luv
    reg.luv_context, package.loaded.luv = io.stdout, module
    local ok, err = pcall(fn)
    reg.luv_context, package.loaded.luv = saved_ctx, saved_mod
    assert(ok, err)
  end

  it("refuses luv built on another libuv with a clear error, before starting anything", function()
    with_fake_luv({ version = function() return 0x010000 end }, function()
      local e = tostring(error_of(tether.run, function() end))
      assert.matches("luv runs on libuv 1.0.0 and tether on libuv", e, 1, true)
      assert.matches("cannot share a loop", e, 1, true)
      e = tostring(error_of(tether.launch, function() end))
      assert.matches("^[^\n]*tether.launch: luv runs on libuv 1.0.0", e)
    end)
    assert.same({ tasks = 0, roots = 0, running = false },
      { tasks = tether.stats().tasks, roots = tether.stats().roots, running = tether.stats().running })
  end)

  it("refuses luv's loop when luv's module is not there to check its version", function()
    with_fake_luv(nil, function()
      assert.matches("luv is not in package.loaded", tostring(error_of(tether.run, function() end)), 1, true)
    end)
  end)
end)

describe("with luv (in a child lua5.4)", function()
  it("uv.run() drives launched tasks: luv callbacks and tasks interleave, and nothing is left after", function()
    local r = run_lua([[
      local uv = require("luv")
      local tether = require("tether")
      local log, pending, delivered = {}, nil, 0
      local h = tether.launch(function()
        for i = 1, 3 do
          tether.sleep(0.002)                     -- a tether timer
          log[#log + 1] = "wait " .. i
          local v = tether.await(function(done) pending = done end)
          log[#log + 1] = "got " .. v
        end
        return "done"
      end)
      local t = uv.new_timer()                    -- a luv timer hands out values
      t:start(1, 1, function()
        if not pending then return end
        local p = pending
        pending, delivered = nil, delivered + 1
        log[#log + 1] = "luv " .. delivered
        p(delivered)
        if delivered == 3 then t:close() end
      end)
      uv.run()
      local s = tether.stats()
      print(table.concat(log, ","))
      print(h:result(), s.tasks, s.handles, s.timers, s.roots, s.running, uv.loop_alive())
    ]])
    assert.equal(0, r.status, child_report(r))
    assert.equal("wait 1,luv 1,got 1,wait 2,luv 2,got 2,wait 3,luv 3,got 3\n"
      .. "done\t0\t0\t0\t0\tfalse\tfalse\n", r.out)
  end)

  it("tether.run and launched roots run on luv's loop, which luv's own callbacks share", function()
    local r = run_lua([[
      local uv = require("luv")
      local tether = require("tether")
      local fired
      local h = tether.launch(function() tether.sleep(0.01); return "launched" end)
      local got = tether.run(function()
        local t = uv.new_timer()
        t:start(5, 0, function() t:close(); fired = tether.now() end)
        h:wait()
        return tether.await(function(done)
          local t2 = uv.new_timer()
          t2:start(5, 0, function() t2:close(); done("awaited") end)
        end)
      end)
      print(got, h:result(), fired ~= nil, uv.loop_alive())
    ]])
    assert.equal(0, r.status, child_report(r))
    assert.equal("awaited\tlaunched\ttrue\tfalse\n", r.out)
  end)

  it("tether.run inside uv.run() is a clear error: use tether.launch there", function()
    local r = run_lua([[
      local uv = require("luv")
      local tether = require("tether")
      local t = uv.new_timer()
      t:start(1, 0, function()
        t:close()
        local ok, err = pcall(tether.run, function() end)
        print(ok, err)
        tether.launch(function() print("launched from a luv callback") end)
      end)
      uv.run()
    ]])
    assert.equal(0, r.status, child_report(r))
    assert.matches("false\ttether.run: the loop is already running (inside uv.run()): use tether.launch there\n",
      r.out, 1, true)
    assert.matches("launched from a luv callback", r.out, 1, true)
  end)

  it("a launched root found deadlocked under uv.run() fails with a deadlock error, reported", function()
    local r = run_lua([[
      local uv = require("luv")
      local tether = require("tether")
      local cleaned = false
      local h = tether.launch(function()
        local _ <close> = setmetatable({}, { __close = function() cleaned = true end })
        tether.with_group(function(g)
          local a, b
          a = g:spawn(function() tether.checkpoint(); b:wait() end)
          b = g:spawn(function() tether.checkpoint(); a:wait() end)
        end)
      end)
      uv.run()
      print(cleaned, h:failed(), tostring(h:error()))
    ]])
    assert.equal(0, r.status, child_report(r))
    assert.matches("^true\ttrue\tError: tether.launch: deadlock", r.out)
    assert.matches("unhandled error in launched task", r.err, 1, true)
    assert.matches("tether.launch: deadlock", r.err, 1, true)
  end)

  it("the luv-style example (examples/luv_interop.lua) runs", function()
    local p = assert(io.popen(support.in_checkout("timeout 20 lua5.4 examples/luv_interop.lua 2>&1")))
    local out = p:read("a")
    local ok = p:close()
    assert.is_true(ok, out)
    assert.matches("all done", out, 1, true)
  end)

  for _, order in ipairs { "luv first", "tether first" } do
    it("closing the Lua state with launched tasks live (" .. order .. "): no crash, everything closed", function()
      local r = run_lua(([[
        local uv, tether
        if %q == "luv first" then uv = require("luv"); tether = require("tether")
        else tether = require("tether"); uv = require("luv") end
        for i = 1, 3 do
          tether.launch(function()
            tether.with_group(function(g)
              g:spawn(tether.sleep, 3600)
              g:spawn(tether.sleep_forever)
              g:spawn(tether.await, function(done)
                local t = uv.new_timer()
                t:start(3600000, 0, done)
              end)
            end)
          end)
        end
        local t = uv.new_timer()
        t:start(3600000, 0, function() end)
        uv.run("nowait")
        print(tether.stats().tasks, tether.stats().roots)
      ]]):format(order))
      assert.equal(0, r.status, child_report(r))
      assert.equal("12\t3\n", r.out)
      assert.equal("", r.err)
    end)
  end

  it("closing the Lua state with launched tasks live on the default loop: no crash", function()
    local r = run_lua([[
      local tether = require("tether")
      local h = tether.launch(function() tether.sleep(3600) end)
      tether.launch(tether.sleep_forever)
      tether.run(function() tether.checkpoint() end)
      print(h:done(), tether.stats().roots)
    ]])
    assert.equal(0, r.status, child_report(r))
    assert.equal("false\t2\n", r.out)
    assert.equal("", r.err)
  end)
end)

describe("the C host (examples/embed/host.c)", function()
  it("embeds Lua and tether on its own loop, beside a C timer, and exits cleanly", function()
    local f = io.open(SPEC_DIR .. "/../build/embed-host", "r")
    if not f then
      pending("build/embed-host is not built (make test and make embed-demo build it)")
      return
    end
    f:close()
    local p = assert(io.popen(support.in_checkout("timeout 20 build/embed-host 2>&1")))
    local out = p:read("a")
    local ok = p:close()
    assert.is_true(ok, out)
    assert.matches("\n15 passed, 0 failed\n$", out)
  end)
end)
