-- jobrunner.lua: run the jobs of a job file as real commands, concurrently, in dependency order.
--
--   lua5.4 examples/jobrunner.lua [options] JOBFILE
--     -j N, --jobs N     run at most N commands at once (default 4)
--     -k, --keep-going   keep going past failures (default: the first failure
--                        stops everything still running, as `make` does without -k)
--     -h, --help
--
-- Exit status: 0 when every job succeeded, 1 when a job failed, timed out or was
-- skipped, 2 for a bad command line or job file, 130 after Ctrl-C.
--
-- The job file (examples/jobs.txt is one): one job per line,
--
--   NAME [after DEP,DEP...] [timeout SECONDS] : COMMAND
--
-- COMMAND is run by `sh -c`. A job starts once every job it comes after has
-- succeeded; a job whose dependency failed is skipped. Blank lines and lines
-- starting with # are ignored.
--
-- On a terminal the runner keeps one live progress line; elsewhere (a pipe, a
-- file, CI) it prints one plain line per event. It ends with a summary: each
-- job's status and time, and for every failed job its exit status and the last
-- lines of its stderr. Ctrl-C terminates every running command (SIGTERM, then
-- SIGKILL after the grace period) before the runner exits.
local tether = require("tether")
local P = tether.process

-- Command line ---------------------------------------------------------------

local function usage(msg)
  io.stderr:write((msg and ("jobrunner: " .. msg .. "\n") or "") ..
    "usage: lua5.4 examples/jobrunner.lua [-j N] [-k|--keep-going] JOBFILE\n")
  os.exit(2)
end

local opts = { jobs = 4, keep_going = false }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "-j" or a == "--jobs" then
      i = i + 1
      opts.jobs = math.tointeger(tonumber(arg[i] or ""))
      if not opts.jobs or opts.jobs < 1 then usage("-j needs a positive integer") end
    elseif a:match("^%-j%d+$") then
      opts.jobs = math.tointeger(tonumber(a:sub(3)))
    elseif a == "-k" or a == "--keep-going" then
      opts.keep_going = true
    elseif a == "-h" or a == "--help" then
      usage()
    elseif a:sub(1, 1) == "-" then
      usage("unknown option " .. a)
    elseif opts.file then
      usage("one job file expected")
    else
      opts.file = a
    end
    i = i + 1
  end
  if not opts.file then usage("no job file given") end
end

-- The job file ---------------------------------------------------------------

-- Returns the jobs in file order: { name, deps = {...}, timeout = s | nil, command }.
local function parse(path)
  local f, err = io.open(path, "r")
  if not f then usage(err) end
  local jobs, byname, n = {}, {}, 0
  for line in f:lines() do
    n = n + 1
    local function bad(why) usage(("%s:%d: %s"):format(path, n, why)) end
    if not line:match("^%s*$") and not line:match("^%s*#") then
      local head, command = line:match("^([^:]*):%s*(.-)%s*$")
      if not head or command == "" then bad("expected 'NAME [after DEPS] [timeout S] : COMMAND'") end
      local words = {}
      for w in head:gmatch("%S+") do words[#words + 1] = w end
      local job = { name = words[1], deps = {}, command = command, line = n }
      if not job.name or not job.name:match("^[%w_.%-/]+$") then bad("bad job name") end
      if byname[job.name] then bad("job '" .. job.name .. "' defined twice") end
      local k = 2
      while k <= #words do
        if words[k] == "after" and words[k + 1] then
          for d in words[k + 1]:gmatch("[^,]+") do job.deps[#job.deps + 1] = d end
        elseif words[k] == "timeout" and tonumber(words[k + 1] or "") then
          job.timeout = tonumber(words[k + 1])
        else
          bad("unexpected '" .. words[k] .. "' (expected 'after DEPS' or 'timeout SECONDS')")
        end
        k = k + 2
      end
      jobs[#jobs + 1] = job
      byname[job.name] = job
    end
  end
  f:close()
  for _, job in ipairs(jobs) do
    for _, d in ipairs(job.deps) do
      if not byname[d] then usage(("%s:%d: job '%s' comes after unknown job '%s'"):format(path, job.line, job.name, d)) end
    end
  end
  -- a cycle would leave jobs waiting forever: refuse it
  local state = {}
  local function visit(job, path_)
    if state[job.name] == "done" then return end
    if state[job.name] == "on" then usage("dependency cycle: " .. path_ .. " -> " .. job.name) end
    state[job.name] = "on"
    for _, d in ipairs(job.deps) do visit(byname[d], path_ .. " -> " .. job.name) end
    state[job.name] = "done"
  end
  for _, job in ipairs(jobs) do visit(job, "") end
  return jobs, byname
end

local jobs, byname = parse(opts.file)

-- Output ------------------------------------------------------------------------

local out                              -- tether.stdout, inside the run
local tty = false                      -- is stdout a terminal? (decided in the run)
local t0 = 0
local status = {}                      -- job name -> "running" | "ok" | "failed" | ...
local started_at, took, detail = {}, {}, {}
local counts = { ok = 0, failed = 0, running = 0 }

local function elapsed() return tether.now() - t0 end

local function progress_line()
  local running = {}
  for _, job in ipairs(jobs) do
    if status[job.name] == "running" then running[#running + 1] = job.name end
  end
  local line = ("[%5.1fs] %d/%d done, %d failed, running: %s"):format(
    elapsed(), counts.ok + counts.failed, #jobs, counts.failed,
    #running > 0 and table.concat(running, " ") or "-")
  if #line > 100 then line = line:sub(1, 97) .. "..." end
  return line
end

-- One event: a plain line when not on a terminal; on a terminal the event line
-- scrolls up and the progress line is redrawn under it.
local function event(fmt, ...)
  local msg = ("[%5.1fs] " .. fmt):format(elapsed(), ...)
  if tty then
    out:write("\r\27[K", msg, "\n", progress_line())
  else
    out:write(msg, "\n")
  end
end

local function redraw()
  if tty then out:write("\r\27[K", progress_line()) end
end

-- Running the jobs ----------------------------------------------------------------

-- The last `n` lines of a text.
local function last_lines(text, n)
  local lines = {}
  for l in (text or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
  local from = math.max(1, #lines - n + 1)
  return { table.unpack(lines, from) }
end

-- Runs one job's command. A non-zero exit raises ProcessError, an overrun
-- TimeoutError (from fail_after): both reach the group, and the summary at the
-- end sorts them out with tether.catch.
local function run_job(job)
  status[job.name] = "running"
  started_at[job.name] = tether.now()
  counts.running = counts.running + 1
  event("start  %s", job.name)
  local _ <close> = setmetatable({}, { __close = function(_, err)
    counts.running = counts.running - 1
    took[job.name] = tether.now() - started_at[job.name]
    if err == nil then
      status[job.name] = "ok"
      counts.ok = counts.ok + 1
      tether.shield(event, "ok     %s (%.2fs)", job.name, took[job.name])
    elseif tether.Cancelled:is(err) then
      status[job.name] = "cancelled"
      tether.shield(event, "cancel %s (terminated)", job.name)
    else
      status[job.name] = "failed"
      counts.failed = counts.failed + 1
      tether.shield(event, "FAIL   %s (%.2fs)", job.name, took[job.name])
    end
  end })
  local argv = { "sh", "-c", job.command }
  -- kill_group: a timeout or a Ctrl-C also ends what the command started
  local popts = { kill_group = true, grace = 2, stdin = "null" }
  local r
  if job.timeout then
    r = tether.fail_after(job.timeout, P.run, argv, popts)
  else
    r = P.run(argv, popts)
  end
  detail[job.name] = { stdout = r.stdout }
end

-- Waits until one of `tasks` has finished (t:wait never raises the task's error:
-- the group reports it).
local function wait_any(tasks)
  local waiters = {}
  for i, t in ipairs(tasks) do waiters[i] = function() t:wait() end end
  tether.first(waiters)
end

-- Spawns every job once its dependencies succeeded, at most opts.jobs at once
-- (the group's limit makes spawn wait for a free slot).
local function schedule(g)
  local tasks = {}
  local function dep_state(name)
    local s = status[name]
    if s == "ok" then return "ok" end
    if s == "failed" or s == "skipped" or s == "cancelled" or s == "timeout" then return "failed" end
    return "pending"
  end
  while true do
    local spawned = false
    for _, job in ipairs(jobs) do
      if not tasks[job.name] and not status[job.name] then
        local ready = true
        for _, d in ipairs(job.deps) do
          local s = dep_state(d)
          if s == "failed" then
            status[job.name] = "skipped"
            detail[job.name] = { why = d }
            event("skip   %s ('%s' did not succeed)", job.name, d)
            ready = false
            break
          end
          ready = ready and s == "ok"
        end
        if ready then
          tasks[job.name] = g:spawn({ name = job.name }, run_job, job)
          spawned = true
        end
      end
    end
    if not spawned then
      local running = {}
      for _, t in pairs(tasks) do if not t:done() then running[#running + 1] = t end end
      if #running == 0 then break end
      wait_any(running)
    end
  end
end

local function run_all()
  local policy = opts.keep_going and "supervisor" or "strict"
  tether.with_group({ name = "runner" }, function(outer)
    if tty then
      -- a daemon, cancelled once the jobs are done: keeps the clock on the line moving
      outer:spawn({ name = "progress", daemon = true }, function()
        while true do
          tether.sleep(0.25)
          redraw()
        end
      end)
    end
    tether.with_group({ name = "jobs", limit = opts.jobs, policy = policy }, schedule)
  end)
end

-- The summary -------------------------------------------------------------------

local function summary()
  if tty then out:write("\r\27[K") end
  out:write(("\n%-14s %-10s %8s\n"):format("job", "status", "time"))
  local failed = 0
  for _, job in ipairs(jobs) do
    local s = status[job.name] or "not run"
    if s ~= "ok" then failed = failed + 1 end
    out:write(("%-14s %-10s %8s\n"):format(job.name, s, took[job.name] and ("%.2fs"):format(took[job.name]) or "-"))
  end
  for _, job in ipairs(jobs) do
    local d = detail[job.name]
    if d and d.error then
      out:write(("\n%s: %s\n"):format(job.name, d.error))
      for _, l in ipairs(d.stderr or {}) do out:write("  | ", l, "\n") end
    elseif d and d.why then
      out:write(("\n%s: skipped, '%s' did not succeed\n"):format(job.name, d.why))
    end
  end
  out:write(("\n%d of %d jobs succeeded in %.2fs\n"):format(#jobs - failed, #jobs, elapsed()))
  return failed
end

-- Every leaf of an ErrorGroup with the name of the task (job) it came from.
local function each_leaf(eg, fn)
  for i = 1, eg.errors.n do
    local e, info = eg.errors[i], eg:info(i)
    if tether.ErrorGroup:is(e) then each_leaf(e, fn) else fn(e, info and info.task) end
  end
end

local function main()
  out = tether.stdout
  -- `test -t 1`: is our stdout a terminal? (the child inherits it)
  tty = P.run({ "sh", "-c", "test -t 1" }, { stdout = "inherit", check = false }).exit_code == 0
  t0 = tether.now()
  out:write(("%d jobs from %s, at most %d at once, %s\n"):format(#jobs, opts.file, opts.jobs,
    opts.keep_going and "keeping going past failures" or "stopping at the first failure"))
  tether.catch(run_all, {
    { tether.TimeoutError, function(eg)
        each_leaf(eg, function(_, name)
          status[name] = "timeout"
          detail[name] = { error = ("timed out after %gs"):format(byname[name].timeout) }
        end)
      end },
    { tether.ProcessError, function(eg)
        each_leaf(eg, function(e, name)
          detail[name] = {
            error = e.signal and ("killed by %s"):format(e.signal) or ("exit status %d"):format(e.exit_code),
            stderr = last_lines(e.stderr, 5),
          }
        end)
      end },
    { tether.IOError, function(eg)
        each_leaf(eg, function(e, name) detail[name] = { error = tostring(e) } end)
      end },
  })
  redraw()
  return summary()
end

local ok, failed = pcall(tether.run, main)
if not ok then
  if tether.Interrupted:is(failed) then
    io.stdout:write("\ninterrupted: every running command was terminated\n")
    os.exit(130)
  end
  error(failed, 0)
end
os.exit(failed == 0 and 0 or 1)
