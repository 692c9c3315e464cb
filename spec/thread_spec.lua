-- Threads (contract §6.8, §7 for thread.limiter): Lua functions in worker states on libuv's pool.
local tether = require("tether")
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
package.path = SPEC_DIR .. "/?.lua;" .. package.path
local support = require("support")
local pool = require("pool_support")

local thread, fs = tether.thread, tether.fs
local error_of, msg_of, is_cancelled = support.error_of, support.msg_of, support.is_cancelled

local function identity(...) return ... end

-- Runs fn() with thread.limiter.total set to n, restoring it after.
local function with_total(n, fn)
  local old = thread.limiter.total
  thread.limiter.total = n
  local ok, err = pcall(fn)
  thread.limiter.total = old
  if not ok then error(err, 0) end
end

-- In a worker: block in a C call (open(2) of a FIFO) until released.
local function block_on(path)
  local f = assert(io.open(path, "r"))
  f:close()
  return "released"
end

describe("tether.thread", function()
  describe("run", function()
    it("runs fn in another Lua state with the standard libraries and package paths", function()
      local r = tether.run(function()
        return thread.run(function()
          return {
            libs = type(string.format) == "function" and type(table.concat) == "function"
              and type(math.sqrt) == "function" and type(os.time) == "function" and type(io.open) == "function"
              and type(utf8.char) == "function" and type(coroutine.wrap) == "function"
              and type(debug.traceback) == "function",
            path = package.path, cpath = package.cpath,
            same_globals = _G.__tether_marker,
          }
        end)
      end)
      assert.is_true(r.libs)
      assert.equal(package.path, r.path)
      assert.equal(package.cpath, r.cpath)
      assert.is_nil(r.same_globals)
    end)

    it("copies arguments and results both ways: nested tables, NaN, integers vs floats, long and binary strings", function()
      _G.__tether_marker = true
      local long = ("\0\1\2\255xyz"):rep(200000)
      local v = {
        1, 2.0, -0.0, 0 / 0, math.huge, -math.huge, math.maxinteger, math.mininteger, "s", true, false,
        nested = { a = { b = { c = "deep" } } },
        [1.5] = "float key", [true] = "bool key", [-3] = "negative key",
        long = long, bin = "\0", sparse = { [1] = 1, [1000] = 2 },
      }
      local shared = { "shared" }
      local r, types, made = tether.run(function()
        return thread.run(function(x, s1, s2)
          local types = {}
          for i = 1, 8 do types[i] = math.type(x[i]) end
          return x, types, { nan = 0 / 0, int = 3, flt = 3.0, s1 = s1, s2 = s2 }
        end, v, shared, shared)
      end)
      _G.__tether_marker = nil
      assert.same({ "integer", "float", "float", "float", "float", "float", "integer", "integer" }, types)
      assert.equal(1, r[1]); assert.equal("integer", math.type(r[1]))
      assert.equal(2.0, r[2]); assert.equal("float", math.type(r[2]))
      assert.equal(-math.huge, 1 / r[3])
      assert.is_true(r[4] ~= r[4])
      assert.equal(math.huge, r[5]); assert.equal(-math.huge, r[6])
      assert.equal(math.maxinteger, r[7]); assert.equal(math.mininteger, r[8])
      assert.equal("s", r[9]); assert.is_true(r[10]); assert.is_false(r[11])
      assert.equal("deep", r.nested.a.b.c)
      assert.equal("float key", r[1.5]); assert.equal("bool key", r[true]); assert.equal("negative key", r[-3])
      assert.is_true(r.long == long)
      assert.equal("\0", r.bin)
      assert.same({ [1] = 1, [1000] = 2 }, r.sparse)
      assert.is_true(made.nan ~= made.nan)
      assert.equal("integer", math.type(made.int)); assert.equal("float", math.type(made.flt))
      assert.same({ "shared" }, made.s1); assert.same({ "shared" }, made.s2)
    end)

    it("keeps nils among the arguments and results, and no arguments at all", function()
      local r = tether.run(function()
        return table.pack(thread.run(function(...) return select("#", ...), ... end, nil, 1, nil))
      end)
      assert.same({ n = 4, 3, nil, 1, nil }, r)
      local none = tether.run(function() return table.pack(thread.run(function() end)) end)
      assert.equal(0, none.n)
    end)

    it("rejects at the call what it cannot copy, naming the argument and where in it", function()
      tether.run(function()
        local cyc = {}
        cyc.self = cyc
        local deep, d = {}, nil
        d = deep
        for _ = 1, 100 do d.x = {}; d = d.x end
        local ok100 = {}
        d = ok100
        for _ = 1, 99 do d.x = {}; d = d.x end
        local m = function(...)
          local args = table.pack(...)
          return msg_of(function() thread.run(identity, table.unpack(args, 1, args.n)) end)
        end
        assert.matches("bad argument #2 to 'tether.thread.run' %(cannot copy a function value%)", m(print))
        assert.matches("#3 .*cannot copy a userdata value", m(1, io.stdout))
        assert.matches("#2 .*cannot copy a thread value", m(coroutine.create(print)))
        assert.matches("cannot copy a function value %(at %.a%[2%]%)", m({ a = { 1, print } }))
        assert.matches("cannot copy a cycle .*%(at %.self%)", m(cyc))
        assert.matches("nested more than 100 deep", m(deep))
        assert.matches("%[\"a b\"%]", m({ ["a b"] = print }))
        assert.is_truthy(thread.run(function(x) return x ~= nil end, ok100))
        local up = 1
        assert.matches("#1 to 'tether.thread.run' %(the function uses the upvalue 'up'",
          msg_of(function() thread.run(function() return up end) end))
        assert.matches("Lua function expected, got C function", msg_of(function() thread.run(print) end))
        assert.matches("Lua function expected, got no value", msg_of(function() thread.run() end))
        assert.matches("#2 to 'tether.thread.run' %(Lua function expected, got number", msg_of(function() thread.run({}, 1) end))
        assert.matches("unknown option 'cancle'; known: cancel", msg_of(function() thread.run({ cancle = "wait" }, identity) end))
        assert.matches("\"wait\" or \"interrupt\"", msg_of(function() thread.run({ cancel = "now" }, identity) end))
      end)
      assert.matches("called outside tether.run", msg_of(function() thread.run(identity) end))
    end)

    it("raises a clear error for results it cannot copy", function()
      tether.run(function()
        assert.matches("result #1 cannot be copied: a function value",
          msg_of(function() thread.run(function() return print end) end))
        assert.matches("result #2 cannot be copied: a userdata value %(at %.f%)",
          msg_of(function() thread.run(function() return 1, { f = io.stdout } end) end))
        assert.matches("result #1 cannot be copied: a cycle",
          msg_of(function() thread.run(function() local t = {}; t[1] = t; return t end) end))
      end)
    end)

    it("raises the worker's error in the calling task, copied (its tostring where it cannot be)", function()
      tether.run(function()
        local e = error_of(thread.run, function() error("boom") end)
        assert.matches("^spec/thread_spec.lua:%d+: boom$", e)
        e = error_of(thread.run, function() error({ code = 7, msg = "table error" }) end)
        assert.same({ code = 7, msg = "table error" }, e)
        e = error_of(thread.run, function() error(setmetatable({}, { __tostring = function() return "custom" end })) end)
        assert.same({}, e)                                -- copied: the metatable stays behind
        e = error_of(thread.run, function() error(io.stdout) end)
        assert.matches("^file %(", e)                     -- cannot be copied: its tostring
        e = error_of(thread.run, function() error() end)
        assert.is_nil(e)
        local ok = pcall(thread.run, function() local x = nil; return x.field end)
        assert.is_false(ok)
      end)
    end)

    it("keeps the worker's traceback with the error in the task's error info", function()
      local eg = error_of(tether.run, function()
        tether.with_group(function(g)
          g:spawn(function()
            thread.run(function()
              local function inner() error("deep failure") end
              inner()
            end)
          end)
        end)
      end)
      assert.is_true(tether.ErrorGroup:is(eg))
      assert.matches("deep failure", eg.errors[1])
      local tb = eg:info(1).traceback
      assert.matches("in a tether.thread.run worker, called from", tb)
      assert.matches("in %a+ 'inner'", tb)
      assert.matches("spec/thread_spec.lua:%d+: in function <spec/thread_spec.lua:%d+>", tb)
      assert.matches("deep failure", tostring(eg))
    end)

    it("makes using tether inside a worker a clear error", function()
      tether.run(function()
        assert.matches("tether cannot be used inside a tether.thread.run worker",
          msg_of(function() thread.run(function() return require("tether") end) end))
        assert.matches("tether cannot be used inside",
          msg_of(function() thread.run(function() return require("tether.core") end) end))
      end)
    end)

    it("runs more works than the pool has threads, never more than the limiter allows at once", function()
      local results, peak = tether.run(function()
        local results, peak = {}, 0
        tether.with_group(function(g)
          local monitor = g:spawn({ daemon = true }, function()
            while true do
              peak = math.max(peak, thread.limiter.borrowed)
              tether.sleep(0.001)
            end
          end)
          for i = 1, 4 * thread.pool_size do
            g:spawn(function()
              local v = thread.run(function(n)
                local s = 0
                for k = 1, 20000 do s = s + k % 7 end
                return n * n, s
              end, i)
              results[i] = v
            end)
          end
        end)
        return results, peak
      end)
      for i = 1, 4 * thread.pool_size do assert.equal(i * i, results[i]) end
      assert.is_true(peak <= thread.limiter.total, "peak " .. peak)
      assert.equal(0, thread.limiter.borrowed)
    end)
  end)

  describe("cancellation", function()
    it("in a cancelled scope: raises Cancelled and runs nothing", function()
      pool.with_dir(function(dir)
        tether.run(function()
          local scope = tether.cancel_scope()
          local e
          scope:run(function()
            scope:cancel()
            e = error_of(thread.run, function(p) io.open(p, "w"):close() end, dir .. "/ran")
          end)
          assert.is_true(is_cancelled(e))
        end)
        assert.is_nil(io.open(dir .. "/ran"))
      end)
    end)

    it("waiting for a limiter token: removed from the queue at once, never runs", function()
      pool.with_dir(function(dir)
        local fifo = pool.mkfifo(dir .. "/hold")
        with_total(1, function()
          tether.run(function()
            local holder
            tether.with_group(function(g)
              g:spawn(function() thread.run(block_on, fifo) end)
              tether.sleep(0.1)
              assert.equal(1, thread.limiter.borrowed)
              local t0 = tether.now()
              local ok = tether.move_on_after(0.05, function()
                thread.run(function(p) io.open(p, "w"):close() end, dir .. "/ran")
              end)
              assert.is_false(ok)
              assert.is_true(tether.now() - t0 < 5)
              holder = pool.release(fifo)
            end)
            holder:close()
          end)
        end)
        assert.is_nil(io.open(dir .. "/ran"))
      end)
    end)

    it("queued in libuv's pool (every thread busy): uv_cancel takes it back, never runs", function()
      pool.with_dir(function(dir)
        tether.run(function()
          tether.with_group(function(g)
            local release = pool.saturate(g, dir)      -- fs opens hold every pool thread
            local ok, err = pcall(function()
              return tether.move_on_after(0.05, function()
                thread.run(function(p) io.open(p, "w"):close() end, dir .. "/ran")
              end)
            end)
            release()
            assert(ok, err)
            assert.is_false(err, "the work ran: the pool was not busy")
          end)
        end)
        assert.is_nil(io.open(dir .. "/ran"))
        assert.equal(0, thread.limiter.borrowed)
      end)
    end)

    it("running, cancel = 'wait' (the default): waited for, returns its results; Cancelled at the next checkpoint", function()
      pool.with_dir(function(dir)
        local fifo = pool.mkfifo(dir .. "/hold")
        tether.run(function()
          local scope = tether.cancel_scope()
          local got, e, holder
          tether.with_group(function(g)
            g:spawn(function()
              scope:run(function()
                got = thread.run(block_on, fifo)
                e = error_of(tether.checkpoint)
              end)
            end)
            tether.sleep(0.1)
            scope:cancel()
            tether.sleep(0.1)
            assert.is_nil(got)                       -- still running
            holder = pool.release(fifo)
          end)
          holder:close()
          assert.equal("released", got)
          assert.is_true(is_cancelled(e))
        end)
      end)
    end)

    it("running, cancel = 'interrupt': stopped at once even when it loops in pcall", function()
      local elapsed, res, escaped = tether.run(function()
        local t0, res = tether.now(), nil
        local ok = tether.move_on_after(0.1, function()
          res = thread.run({ cancel = "interrupt" }, function()
            local n = 0
            for _ = 1, 1e12 do
              local ok = pcall(function() while true do n = n + 1 end end)
              if not ok then n = 0 end                -- tries to swallow it, and loops on
            end
            return "escaped"
          end)
        end)
        return tether.now() - t0, ok, res
      end)
      assert.is_false(res)
      assert.is_nil(escaped)
      assert.is_true(elapsed < 5, "took " .. elapsed)
    end)

    it("running, cancel = 'interrupt': an xpcall handler cannot swallow it either", function()
      local ok = tether.run(function()
        return tether.move_on_after(0.05, function()
          thread.run({ cancel = "interrupt" }, function()
            while true do xpcall(function() while true do end end, function(e) return e end) end
          end)
        end)
      end)
      assert.is_false(ok)
    end)

    it("interrupt while stuck in a C call: the call finishes first, then Cancelled", function()
      pool.with_dir(function(dir)
        local fifo = pool.mkfifo(dir .. "/hold")
        tether.run(function()
          local scope = tether.cancel_scope()
          local e, finished, released_at, raised_at, holder
          tether.with_group(function(g)
            g:spawn(function()
              scope:run(function()
                e = error_of(thread.run, { cancel = "interrupt" }, function(p)
                  local f = assert(io.open(p, "r"))   -- blocks in open(2)
                  f:close()
                  while true do end                   -- the next instructions are interrupted
                end, fifo)
                raised_at = tether.now()
              end)
            end)
            tether.sleep(0.1)
            scope:cancel()
            tether.sleep(0.1)
            finished = raised_at ~= nil
            released_at = tether.now()
            holder = pool.release(fifo)
          end)
          holder:close()
          assert.is_false(finished, "Cancelled came before the C call finished")
          assert.is_true(is_cancelled(e), tostring(e))
          assert.is_true(raised_at >= released_at)
        end)
      end)
    end)

    it("dump says a task waits on a worker thread, or on the limiter", function()
      pool.with_dir(function(dir)
        local fifo = pool.mkfifo(dir .. "/hold")
        with_total(1, function()
          tether.run(function()
            local text, holder
            tether.with_group(function(g)
              g:spawn(function() thread.run(block_on, fifo) end)
              tether.sleep(0.1)
              g:spawn(function() thread.run(identity) end)
              tether.sleep(0.05)
              text = tether.dump()
              holder = pool.release(fifo)
            end)
            holder:close()
            assert.matches("thread.run on a worker thread", text)
            assert.matches("thread.run on tether.thread.limiter", text)
          end)
        end)
      end)
    end)

    it("after the work completed: the results stand, the next checkpoint raises", function()
      local r, e = tether.run(function()
        local scope = tether.cancel_scope()
        local r, e
        scope:run(function()
          r = thread.run(function() return 42 end)
          scope:cancel()
          e = error_of(tether.checkpoint)
        end)
        return r, e
      end)
      assert.equal(42, r)
      assert.is_true(is_cancelled(e))
    end)

    it("with every pool thread taken by works (total = pool size), files wait: why the default is pool size - 1", function()
      pool.with_dir(function(dir)
        local n = thread.pool_size
        local fifos, holders = {}, {}
        for i = 1, n do fifos[i] = pool.mkfifo(dir .. "/t" .. i) end
        with_total(n, function()
          tether.run(function()
            local served
            tether.with_group(function(g)
              for i = 1, n do g:spawn(function() thread.run(block_on, fifos[i]) end) end
              tether.sleep(0.2)
              local ok = pcall(function()
                served = tether.move_on_after(0.1, fs.stat, dir)
              end)
              for i = 1, n do holders[i] = pool.release(fifos[i]) end
              assert(ok)
            end)
            for i = 1, n do holders[i]:close() end
            assert.is_false(served, "a file operation got a pool thread although every thread was busy")
          end)
        end)
      end)
    end)
  end)

  describe("limiter", function()
    it("defaults to the pool size minus one (at least 1), from UV_THREADPOOL_SIZE (default 4)", function()
      local env = tonumber(os.getenv("UV_THREADPOOL_SIZE") or "4")
      assert.equal(env, thread.pool_size)
      assert.equal(math.max(1, thread.pool_size - 1), thread.limiter.total)
      assert.equal(0, thread.limiter.borrowed)
      assert.equal(thread.limiter.total, thread.limiter.available)
      assert.matches("tether.thread.limiter", tostring(thread.limiter))
    end)

    -- NOTE: under `make tsan` a child lua5.4 cannot load the ThreadSanitizer build
    -- (its runtime must be preloaded, and the children run without it).
    ;(os.getenv("TETHER_TSAN") and pending or it)("reads UV_THREADPOOL_SIZE when the module loads (a child process with 1 thread)", function()
      local child = support.in_checkout("UV_THREADPOOL_SIZE=1 lua5.4 -e \"local t = require('tether').thread; "
        .. "io.write(t.pool_size, ' ', t.limiter.total)\"")
      local p = io.popen(child)
      assert.equal("1 1", p:read("a"))
      p:close()
    end)

    it("acquire returns a guard for <close>; borrowed and available follow; release gives it back", function()
      tether.run(function()
        local lim = thread.limiter
        do
          local g <close> = lim:acquire()
          assert.equal(1, lim.borrowed)
          assert.equal(lim.total - 1, lim.available)
        end
        assert.equal(0, lim.borrowed)
        lim:acquire()
        assert.equal(1, lim.borrowed)
        lim:release()
        assert.equal(0, lim.borrowed)
        local g = lim:acquire()
        lim:release()
        local g2 <close> = lim:acquire()
        g:release()                       -- released already: does not take g2's token
        assert.equal(1, lim.borrowed)
      end)
      assert.equal(0, thread.limiter.borrowed)
    end)

    it("one token per task: a second acquire or a release without one is a clear error", function()
      tether.run(function()
        local g <close> = thread.limiter:acquire()
        assert.matches("already holds", msg_of(function() thread.limiter:acquire() end))
        g:release()
        assert.matches("holds no token", msg_of(function() thread.limiter:release() end))
        assert.matches("bad self", msg_of(function() thread.limiter.acquire({}) end))
      end)
    end)

    it("wakes waiters in FIFO order; raising total wakes them; a cancelled acquire holds nothing", function()
      with_total(1, function()
        tether.run(function()
          local lim, order = thread.limiter, {}
          tether.with_group(function(g)
            local first = lim:acquire()
            local waiters = {}
            for i = 1, 3 do
              waiters[i] = g:spawn(function()
                local tok <close> = lim:acquire()
                order[#order + 1] = i
                tether.sleep(0.01)
              end)
            end
            local cancelled = g:spawn(function() lim:acquire() end)
            tether.sleep(0.02)
            cancelled:cancel()
            tether.sleep(0.01)
            assert.is_true(cancelled:cancelled())
            assert.equal(1, lim.borrowed)
            first:release()
          end)
          assert.same({ 1, 2, 3 }, order)
          assert.equal(0, lim.borrowed)
          -- raising total lets several waiters in at once
          local inside, maxin = 0, 0
          tether.with_group(function(g)
            local hold = lim:acquire()
            for _ = 1, 3 do
              g:spawn(function()
                local tok <close> = lim:acquire()
                inside = inside + 1
                maxin = math.max(maxin, inside)
                tether.sleep(0.02)
                inside = inside - 1
              end)
            end
            tether.sleep(0.01)
            lim.total = 4
            hold:release()
          end)
          assert.equal(3, maxin)
        end)
      end)
    end)

    it("total must be an integer >= 1; other fields cannot be set", function()
      assert.matches("integer >= 1", msg_of(function() thread.limiter.total = 0 end))
      assert.matches("integer >= 1", msg_of(function() thread.limiter.total = 1.5 end))
      assert.matches("integer >= 1", msg_of(function() thread.limiter.total = "2" end))
      assert.matches("only 'total'", msg_of(function() thread.limiter.borrowed = 1 end))
    end)
  end)
end)
