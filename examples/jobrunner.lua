-- jobrunner.lua: run a small graph of jobs concurrently with tether (`make demo`).
--
--   lua5.4 examples/jobrunner.lua               run every scenario once (the demo)
--   lua5.4 examples/jobrunner.lua SCENARIO      run one scenario: ok | fail | keep-going
--
-- Each job has dependencies, an optional deadline and an `action`. The action
-- here only simulates work with tether.sleep; swap `simulate` for something
-- that runs a real command and the rest of the runner stays the same.
-- Press Ctrl-C while it runs: every running job is cancelled, its cleanup
-- runs, and the runner exits with status 130.

local tether = require("tether")

-- Jobs ----------------------------------------------------------------------

-- A failing job raises a JobError; a job that overruns its deadline raises
-- tether.TimeoutError (from fail_after). Both are subclasses of tether.Error.
local JobError = tether.error_class("JobError")

-- Listed in dependency order. `work` is the simulated run time in seconds,
-- `deadline` the most a job may take, `steps` sub-jobs run concurrently
-- inside the job (a nested task group).
local JOBS = {
  { name = "fetch",   work = 0.15 },
  { name = "config",  work = 0.05 },
  { name = "lint",    deps = { "config" }, work = 0.10 },
  { name = "compile", deps = { "fetch", "config" }, work = 0.20, deadline = 1.0 },
  { name = "docs",    deps = { "config" }, work = 0.45, deadline = 0.6 },
  { name = "test",    deps = { "compile" }, deadline = 1.0, steps = {
      { name = "test/unit",        work = 0.10 },
      { name = "test/integration", work = 0.20 },
  } },
  { name = "package", deps = { "compile", "docs", "test" }, work = 0.05 },
}

local MAX_PARALLEL = 2

-- Output --------------------------------------------------------------------

local t0 = 0   -- start of the current scenario, on the tether.now() clock

-- One line per job: "  START-END  NAME  what happened", times in seconds
-- since the scenario began.
local function say(started, name, fmt, ...)
  local now = tether.now() - t0
  local span = started and string.format("%4.2f-%4.2fs", started - t0, now)
    or string.format("%10s", string.format("%4.2fs", now))
  io.write(string.format("  %s  %-17s " .. fmt .. "\n", span, name, ...))
  io.flush()
end

-- A to-be-closed guard: reports how a job ended. On cancellation this is the
-- job's cleanup code, and it runs because Cancelled unwinds the task like any
-- other error.
local function report_exit(name)
  local started = tether.now()
  return setmetatable({}, { __close = function(_, err)
    if err == nil then
      say(started, name, "done")
    elseif tether.Cancelled:is(err) then
      say(started, name, "cancelled (%s), cleaning up", err.reason or "no reason")
    elseif tether.TimeoutError:is(err) then
      say(started, name, "TIMED OUT")
    elseif tether.ErrorGroup:is(err) then
      say(started, name, "FAILED: %d of its steps failed", err.errors.n)
    else
      say(started, name, "FAILED: %s", tostring(err))
    end
  end })
end

-- Actions -------------------------------------------------------------------

-- The simulated action: sleep for `work` seconds, or fail after `fail_at`.
-- To run real commands, replace this with a function that starts a process
-- and waits for it; a failing command should raise JobError.
local function simulate(job)
  if job.fail_at then
    tether.sleep(job.fail_at)
    error(JobError(job.fail, { job = job.name }))
  end
  tether.sleep(job.work)
end

local run_job

-- A job with steps runs them concurrently in its own group: if a step fails,
-- the other steps are cancelled and the job fails with a nested ErrorGroup.
local function run_steps(job)
  tether.with_group({ name = job.name }, function(g)
    for _, step in ipairs(job.steps) do
      g:spawn({ name = step.name }, run_job, step)
    end
  end)
end

function run_job(job)
  local _ <close> = report_exit(job.name)
  local action = job.action or (job.steps and run_steps) or simulate
  if job.deadline then
    tether.fail_after(job.deadline, action, job)
  else
    action(job)
  end
end

-- The scheduler -------------------------------------------------------------

-- Block until at least one of `tasks` has finished: race one waiter per task
-- with tether.first, which cancels the other waiters as soon as one returns.
-- (t:wait() never raises the task's error: the group reports that.)
local function wait_any(tasks)
  local waiters = {}
  for i, t in ipairs(tasks) do
    waiters[i] = function() t:wait() end
  end
  tether.first(waiters)
end

-- Run `jobs` in a task group with at most MAX_PARALLEL at once. A job starts
-- once all its dependencies succeeded. With policy "strict" the first failure
-- cancels everything still running; with "supervisor" the other jobs keep
-- going and jobs that depend on a failed one are skipped.
local function run_jobs(jobs, policy)
  local tasks = {}           -- job name -> Task handle, once started
  local skipped = {}

  local function state(name)
    local t = tasks[name]
    if skipped[name] then return "failed" end
    if not t or not t:done() then return "pending" end
    return (t:failed() or t:cancelled()) and "failed" or "ok"
  end

  tether.with_group({ name = "jobs", limit = MAX_PARALLEL, policy = policy }, function(g)
    while true do
      local spawned = false
      for _, job in ipairs(jobs) do
        if not tasks[job.name] and not skipped[job.name] then
          local ready = true
          for _, dep in ipairs(job.deps or {}) do
            local s = state(dep)
            if s == "failed" then
              skipped[job.name] = true
              say(nil, job.name, "skipped: '%s' did not succeed", dep)
            end
            ready = ready and s == "ok"
          end
          if ready and not skipped[job.name] then
            -- Waits here (a checkpoint) while MAX_PARALLEL jobs are running.
            tasks[job.name] = g:spawn({ name = job.name }, run_job, job)
            spawned = true
          end
        end
      end
      -- A spawn may have waited for a slot while other jobs finished, so
      -- look for ready jobs again before waiting.
      if not spawned then
        local running = {}
        for _, t in pairs(tasks) do
          if not t:done() then running[#running + 1] = t end
        end
        if #running == 0 then break end
        wait_any(running)
      end
    end
  end)
end

-- Reporting -----------------------------------------------------------------

-- A compact view of an ErrorGroup: one line per error with the task it came
-- from, nested groups indented. (tostring(eg) gives the full tree, with every
-- traceback.)
local function print_tree(eg, indent)
  indent = indent or "    "
  print(string.format("%s%s: %s", indent, "ErrorGroup", eg.message))
  for i = 1, eg.errors.n do
    local e, info = eg.errors[i], eg:info(i)
    if tether.ErrorGroup:is(e) then
      print_tree(e, indent .. "  ")
    else
      print(string.format("%s  %-26s  from task '%s'", indent, tostring(e),
        info and info.task or "?"))
    end
  end
end

-- Calls fn(err, task_name) for every leaf of an ErrorGroup, depth first.
local function each_leaf(eg, fn)
  for i = 1, eg.errors.n do
    local e, info = eg.errors[i], eg:info(i)
    if tether.ErrorGroup:is(e) then
      each_leaf(e, fn)
    else
      fn(e, info and info.task)
    end
  end
end

-- Scenarios -----------------------------------------------------------------

-- Each scenario changes a copy of JOBS: `patch[name]` fields override the
-- job's (or step's) fields. `expect` is how the run should end.
local SCENARIOS = {
  { name = "ok", policy = "strict", expect = "ok",
    about = "every job succeeds; independent jobs run side by side",
    patch = {} },
  { name = "fail", policy = "strict", expect = "failed",
    about = "an integration test fails: everything still running is cancelled",
    patch = { ["test/integration"] = { fail_at = 0.05, fail = "exit status 1" } } },
  { name = "keep-going", policy = "supervisor", expect = "failed",
    about = "keep going past failures; timeouts are handled, the rest reported",
    patch = { docs = { work = 0.8 },
              lint = { fail_at = 0.05, fail = "3 warnings treated as errors" } } },
}

local function patched(jobs, patch)
  local out = {}
  for i, job in ipairs(jobs) do
    local copy = {}
    for k, v in pairs(job) do copy[k] = v end
    for k, v in pairs(patch[job.name] or {}) do copy[k] = v end
    if job.steps then copy.steps = patched(job.steps, patch) end
    out[i] = copy
  end
  return out
end

-- Runs one scenario; returns "ok" or "failed".
local function run_scenario(sc)
  print(string.format("== %s: %s", sc.name, sc.about))
  t0 = tether.now()
  local ok, err = pcall(tether.catch, function()
    run_jobs(patched(JOBS, sc.patch), sc.policy)
  end, {
    -- Handle the timeouts here; every other error propagates out of catch.
    { tether.TimeoutError, function(eg)
        each_leaf(eg, function(e, task)
          print(string.format("  handled: '%s' timed out (%s); a retry would go here",
            task or "?", e.message))
        end)
      end },
  })
  if ok then
    print(string.format("  finished in %.2fs\n", tether.now() - t0))
    return "ok"
  end
  -- A pcall that catches a cancellation (here: Ctrl-C) must let it go on.
  if tether.Cancelled:is(err) then error(err, 0) end
  if tether.ErrorGroup:is(err) then
    print("  not handled, raised from catch:")
    print_tree(err)
  else
    print("  error: " .. tostring(err))
  end
  print()
  return "failed"
end

-- Main ----------------------------------------------------------------------

local function main(which)
  local chosen = {}
  for _, sc in ipairs(SCENARIOS) do
    if which == nil or which == sc.name then chosen[#chosen + 1] = sc end
  end
  if #chosen == 0 then
    io.stderr:write("usage: jobrunner.lua [ok | fail | keep-going]\n")
    return 2
  end
  if which then
    -- A single scenario behaves like a real tool: exit 1 when a job failed.
    return run_scenario(chosen[1]) == "ok" and 0 or 1
  end
  -- The demo: exit 0 when every scenario ended the way it is meant to.
  local surprises = 0
  for _, sc in ipairs(chosen) do
    local outcome = run_scenario(sc)
    if outcome ~= sc.expect then
      print(string.format("!! scenario %s ended %s, expected %s", sc.name, outcome, sc.expect))
      surprises = surprises + 1
    end
  end
  return surprises == 0 and 0 or 1
end

local ok, status = pcall(tether.run, main, ...)
if not ok then
  if tether.Interrupted:is(status) then
    io.stderr:write("\ninterrupted: every running job was cancelled and cleaned up\n")
    os.exit(130)
  end
  error(status, 0)
end
os.exit(status)
