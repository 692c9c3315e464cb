-- Regression: tether.run hung for ever in epoll_wait(-1) when its libuv timer
-- came due before uv_run(UV_RUN_ONCE) polled.  libuv 1.44 runs due timers at
-- the top of uv_run, so the one-shot timer fired (and stopped) there; the poll
-- that followed had no timer left to bound it, and the SIGINT watcher (kept
-- referenced since 7b6a55c) kept the loop alive: nothing ever woke it.  Found
-- by the stress trees: a task sleeping a few microseconds arms the timer with
-- 0 or 1 ms, and the millisecond boundary passes between arming it and the
-- poll now and then (about once in a few hundred to a few thousand sleeps).
-- The program runs in a child under `timeout`, so a hang fails this case
-- instead of hanging the suite.
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/regress/[^/]*$")) or "."
local BUILD = os.getenv("TETHER_BUILD") or "build"

-- Runs `code` in a fresh lua5.4 against this checkout; returns its exit status and output.
local function run_child(code, seconds)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(code)
  f:close()
  local cmd = ("cd '%s' && LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='%s/?.so;;' "
    .. "timeout %d lua5.4 '%s' 2>&1"):format(ROOT, BUILD, seconds, script)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, status = p:close()
  os.remove(script)
  return status, out
end

describe("a timer that comes due just before the loop polls", function()
  it("still wakes the sleeper (no hang in epoll_wait)", function()
    -- Sleeps of 0-6 microseconds for 3 seconds (about 3,000 timer arms); the
    -- broken core hung in nearly every such run.
    local status, out = run_child([[
      local tether = require("tether")
      local n = 0
      tether.run(function()
        while tether.now() < 3 do
          n = n + 1
          tether.sleep((n % 7) * 1e-6)
        end
      end)
      io.write("done")
    ]], 12)
    assert.are.equal("done", out, "the child printed: " .. out)
    assert.are.equal(0, status, "exit status " .. tostring(status) .. " (124: timed out, i.e. hung)")
  end)
end)
