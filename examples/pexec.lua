-- pexec.lua: run a command once per input line, N at a time (like `xargs -P N -n 1`).
--
--   lua5.4 examples/pexec.lua [-j N] [--fail-fast] COMMAND [ARG...] < lines
--
-- Each line of stdin becomes one run of COMMAND ARG...: the line replaces every
-- argument that is exactly {}, or is appended when no argument is {}. There is
-- no shell: the line is one argument, whatever it holds.
--   -j N         at most N commands at once (default: 4)
--   --fail-fast  the first failure terminates the running commands and stops
--                (default: run every line, as xargs does)
-- Each command's output is printed in one piece when it finishes, so outputs
-- never interleave; its stderr goes to stderr, prefixed with the line.
-- Exit status: 0 when every command succeeded, 123 when one failed (as xargs),
-- 2 for a bad command line, 130 after Ctrl-C.
--
--   printf '%s\n' *.lua | lua5.4 examples/pexec.lua -j 8 luac -p
--   seq 1 20 | lua5.4 examples/pexec.lua -j 4 sh -c 'sleep 0.$1; echo done $1' sh {}
local tether = require("tether")
local P = tether.process

local jobs, fail_fast, cmd = 4, false, {}
do
  local i = 1
  while i <= #arg and #cmd == 0 do
    local a = arg[i]
    if a == "-j" then
      i = i + 1
      jobs = math.tointeger(tonumber(arg[i] or ""))
    elseif a:match("^%-j%d+$") then
      jobs = math.tointeger(tonumber(a:sub(3)))
    elseif a == "--fail-fast" then
      fail_fast = true
    elseif a == "--" then
      cmd = { table.unpack(arg, i + 1) }
      break
    else
      cmd = { table.unpack(arg, i) }
      break
    end
    i = i + 1
  end
  if not jobs or jobs < 1 or #cmd == 0 then
    io.stderr:write("usage: lua5.4 examples/pexec.lua [-j N] [--fail-fast] COMMAND [ARG...] < lines\n")
    os.exit(2)
  end
end

-- The argv of one line: {} replaced, or the line appended.
local function argv_for(line)
  local argv, placed = {}, false
  for i, a in ipairs(cmd) do
    if a == "{}" then argv[i] = line; placed = true else argv[i] = a end
  end
  if not placed then argv[#argv + 1] = line end
  return argv
end

local failed = 0

local function run_line(line)
  local r = P.run(argv_for(line), { check = false, stdin = "null", kill_group = true })
  tether.stdout:write(r.stdout)
  if r.stderr ~= "" then
    for l in r.stderr:gmatch("[^\n]+") do tether.stderr:write(line, ": ", l, "\n") end
  end
  if r.exit_code ~= 0 then
    failed = failed + 1
    local how = r.signal and ("killed by " .. r.signal) or ("exit status " .. r.exit_code)
    tether.stderr:write(("pexec: %s: %s\n"):format(line, how))
    if fail_fast then error(("'%s' failed (%s)"):format(line, how), 0) end
  end
end

local ok, err = pcall(tether.run, function()
  -- Reading stdin is a checkpoint like any other: spawn waits (the group's
  -- limit) while N commands run, so at most N lines are in flight.
  tether.with_group({ limit = jobs }, function(g)
    for line in tether.stdin:lines() do
      if line ~= "" then g:spawn(run_line, line) end
    end
  end)
end)
if not ok then
  if tether.Interrupted:is(err) then os.exit(130) end
  if tether.ErrorGroup:is(err) and fail_fast then
    io.stderr:write("pexec: stopped: " .. tostring(err.errors[1]) .. "\n")
    os.exit(123)
  end
  error(err, 0)
end
os.exit(failed == 0 and 0 or 123)
