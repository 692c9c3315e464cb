-- spec/alloc/run.lua: build and run build/alloc-harness from specs (alloc_spec.lua and the spec/regress/ files).
--
--   local harness = require("alloc.run")    -- with spec/ on package.path
--   harness.ensure()                        -- builds it when missing or stale
--   local r = harness.run_code(code, args)  -- a fresh harness runs `code`
--   r.exit (124: hung; >= 128: killed by signal r.exit - 128), r.out, r.signal
local M = {}

local SPEC_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/alloc/[^/]*$")) or "spec"
M.ROOT = SPEC_DIR:match("^(.*)/spec$") or "."
M.BUILD = os.getenv("TETHER_BUILD") or "build"
M.HARNESS = "build/alloc-harness"

-- Under `make check` LD_PRELOAD puts ASan into every child process, and
-- LeakSanitizer reports what tools like xargs or tail never free.  So
-- helper commands run without it (M.sh strips it), and only the harness
-- gets it back (M.harness_cmd()).
local PRELOAD = os.getenv("LD_PRELOAD")

-- The command that starts the harness (with the sanitizer preload, if any).
function M.harness_cmd()
  if PRELOAD and PRELOAD ~= "" then
    return ("env LD_PRELOAD='%s' %s"):format(PRELOAD, M.HARNESS)
  end
  return M.HARNESS
end

-- Runs a shell command from the checkout's root, without LD_PRELOAD;
-- returns ok, output (stdout and stderr).
function M.sh(cmd)
  local p = assert(io.popen("cd '" .. M.ROOT .. "' && exec env -u LD_PRELOAD sh -c '"
    .. cmd:gsub("'", "'\\''") .. "' 2>&1", "r"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

-- Build the harness when it is missing or older than its source (the
-- Makefile has the same rule in spec/alloc/Makefile.frag).
function M.ensure()
  if M.sh("test -x " .. M.HARNESS .. " && ! test spec/alloc/harness.c -nt " .. M.HARNESS) then return end
  local ok, out = M.sh("mkdir -p build && cc -std=c99 -O2 -g -Wall -Wextra -D_POSIX_C_SOURCE=200809L "
    .. "$(pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4) "
    .. "-o " .. M.HARNESS .. ".tmp spec/alloc/harness.c -llua5.4 -luv && mv " .. M.HARNESS .. ".tmp " .. M.HARNESS)
  assert(ok, "could not build " .. M.HARNESS .. ":\n" .. out)
end

-- Runs `code` (Lua source) in a fresh harness with the extra arguments
-- `args` (array of strings), under `timeout`.  Returns { exit, out, signal }.
function M.run_code(code, args, seconds)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(code)
  f:close()
  local quoted = {}
  for i, a in ipairs(args or {}) do quoted[i] = "'" .. tostring(a) .. "'" end
  local _, out = M.sh(("TETHER_BUILD='%s' timeout %d %s '%s' %s; echo \"EXIT=$?\""):format(
    M.BUILD, seconds or 20, M.harness_cmd(), script, table.concat(quoted, " ")))
  os.remove(script)
  local exit = tonumber(out:match("EXIT=(%d+)%s*$"))
  out = out:gsub("EXIT=%d+%s*$", "")
  return { exit = exit, out = out, signal = exit and exit >= 128 and exit - 128 or nil }
end

return M
