-- spec/support.lua: helpers shared by several spec files (not a spec itself: busted
-- only runs files matching "_spec"). A spec loads it with spec/ on package.path:
--
--   local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
--   package.path = SPEC_DIR .. "/?.lua;" .. package.path
--   local support = require("support")
local tether = require("tether")

local support = {}

-- The checkout's root, from this file's own path (spec/helper.lua finds it the same way).
local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "spec"
local ROOT = SPEC_DIR:match("^(.*)/spec$") or "."
-- The build the suite runs against (spec/helper.lua honours TETHER_BUILD too).
local BUILD = os.getenv("TETHER_BUILD") or "build"

-- Runs fn(...) and returns the error it raised; fails the case if it raised nothing.
function support.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, got success")
  return err
end
support.raised = support.error_of

-- Calls fn and returns its error as text; fails the case if it raised nothing.
function support.msg_of(fn)
  return tostring(support.error_of(fn))
end

function support.is_cancelled(e) return tether.Cancelled:is(e) end

-- Checkpoints until pred() holds (gives up loudly rather than hanging on a broken core).
function support.wait_until(pred)
  for _ = 1, 1e6 do
    if pred() then return end
    tether.checkpoint()
  end
  error("wait_until: the condition never became true", 2)
end

-- Cancels a scope with the given reason and returns the Cancelled a checkpoint in it raises.
-- Call it inside tether.run.
function support.capture_cancelled(reason)
  local c
  local scope = tether.cancel_scope({})
  scope:run(function()
    scope:cancel(reason)
    local _
    _, c = pcall(tether.checkpoint)
    error(c)
  end)
  assert(tether.Cancelled:is(c), "a checkpoint in a cancelled scope raised no Cancelled: " .. tostring(c))
  return c
end

-- A nested group built by hand:
--   outer "outer msg": [ A1 (MyErr), inner "inner msg": [ B1 (OtherErr), A2 (SubErr < MyErr) ], "plain string" ]
function support.sample()
  local MyErr = tether.error_class("MyErr")
  local SubErr = tether.error_class("SubErr", MyErr)
  local OtherErr = tether.error_class("OtherErr")
  local A1, A2, B1 = MyErr("a1"), SubErr("a2"), OtherErr("b1")
  local inner = tether.ErrorGroup("inner msg", { B1, A2 })
  local outer = tether.ErrorGroup("outer msg", { A1, inner, "plain string" })
  return {
    MyErr = MyErr, SubErr = SubErr, OtherErr = OtherErr,
    A1 = A1, A2 = A2, B1 = B1, inner = inner, outer = outer,
  }
end

-- Describes a group as a plain nested table: { msg = message, n = count, child, child, ... }
-- with the leaves kept as they are.
function support.shape(eg)
  local t = { msg = eg.message, n = eg.errors.n }
  for i = 1, eg.errors.n do
    local e = eg.errors[i]
    if tether.ErrorGroup:is(e) then t[i] = support.shape(e) else t[i] = e end
  end
  return t
end

-- A shell command line that runs cmd in the checkout's root, with LUA_PATH and
-- LUA_CPATH pointing at this checkout's lua/ and the build the suite runs against.
function support.in_checkout(cmd)
  return ("cd '%s' && LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='%s/?.so;;' %s"):format(ROOT, BUILD, cmd)
end

-- Runs Lua source `code` in a fresh lua5.4 against this checkout (under `timeout`,
-- default 20 s), with the extra command-line arguments `args` (strings).
-- Returns { status = exit status (124: timed out), out = stdout, err = stderr }.
function support.run_lua(code, seconds, args)
  local script, errfile = os.tmpname(), os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(code)
  f:close()
  local p = assert(io.popen(support.in_checkout(("timeout %d lua5.4 '%s' %s 2>'%s'"):format(
    seconds or 20, script, table.concat(args or {}, " "), errfile)), "r"))
  local out = p:read("a")
  local _, _, status = p:close()
  f = assert(io.open(errfile, "r"))
  local err = f:read("a")
  f:close()
  os.remove(script)
  os.remove(errfile)
  return { status = status, out = out, err = err }
end

return support
