-- spec/stress/tree.lua: random task trees (a seeded plan, then an interpreter that runs it and checks the contract).
--
--   local tree = require("stress.tree")
--   local plan = tree.generate(seed [, opts])   -- deterministic for a seed
--   local res  = tree.run(plan)                 -- runs it under tether.run
--   res.violations  -- array of texts (empty when the tree passed)
--   res.tasks, res.groups, res.raised, res.reported, res.caught
--
-- The plan is made first, from math.randomseed(seed) alone, so a seed always
-- replays the same tree (the interleaving may still differ a little: tasks
-- sleep 0-3 ms for real).  tree.describe(plan) prints it.
--
-- What the interpreter checks, on top of the ledger (stress/ledger.lua:
-- every non-cancellation error reported exactly once, none invented):
--   * no orphans: when with_group returns or raises, every task spawned into
--     the group is done, and every one of them started running;
--   * every Cancelled that the test sees is explained by a cancelled scope
--     that encloses the code seeing it (by its reason: "gcancel:G3",
--     "tcancel:T9", "scancel:S4", deadlines, failing tasks, daemons), not
--     hidden behind a shield, and a Cancelled that leaves a scope (with_group,
--     move_on_after, fail_after, scope:run, shield, catch, g:start) is
--     explained by a scope outside it: a scope catches its own Cancelled;
--   * level-triggered: after catching a Cancelled, the next checkpoint
--     raises again;
--   * with_group raises only ErrorGroups (message naming the group) or
--     Cancelled; returns the body's results, or nothing if the body was
--     interrupted; task handles agree with what the task did (done, failed,
--     cancelled, error, result); opts.limit is never exceeded; move_on_after
--     returns false only after its deadline; spawning into a closed group
--     is a clear error;
--   * channels (op chan): values arrive in order, once each, and every value
--     whose send returned is received or was still buffered when a
--     cancellation closed the consumer; the tree's Lock, Semaphore and
--     CapacityLimiter (op acquire) never have too many holders and are free
--     at the end;
--   * after tether.run: stats() is all zero.
local tether = require("tether")
local Ledger = require("stress.ledger")

local M = {}

local MyErr = tether.error_class("StressErr")
local SubErr = tether.error_class("StressSubErr", MyErr)
M.MyErr, M.SubErr = MyErr, SubErr

local safe = Ledger.safe
local pack = table.pack
local unpack = table.unpack

local function is_cancelled(e) return tether.Cancelled:is(e) end
local function is_group(e) return tether.ErrorGroup:is(e) end

local function group_msg(name) return "errors in task group '" .. name .. "'" end

-- ===========================================================================
-- The plan
-- ===========================================================================

local rnd = math.random
local function chance(p) return rnd() < p end

-- Weighted choice among { name, weight } pairs (weight 0: excluded).
local function pick(choices)
  local total = 0
  for i = 1, #choices do total = total + choices[i][2] end
  local x = rnd() * total
  for i = 1, #choices do
    x = x - choices[i][2]
    if x < 0 then return choices[i][1] end
  end
  return choices[#choices][1]
end

local FAIL_KINDS = { { "string", 4 }, { "table", 3 }, { "class", 3 }, { "nil", 1 }, { "false", 1 } }
local NONNIL_KINDS = { { "string", 4 }, { "table", 3 }, { "class", 3 } }

local function fail_kind(allow_nil)
  return pick(allow_nil and FAIL_KINDS or NONNIL_KINDS)
end

local MAX_DEPTH = 8     -- nesting of groups
local MAX_NEST = 4      -- nesting of scopes/cleanups inside one context

-- Without timers (opts.timers == false) tasks sleep 0 s (a checkpoint) and
-- deadlines are 0 (cancelled at once) or 10 s (never reached): the trees then
-- never depend on a timer coming due.
local NO_TIMERS = false
-- With opts.procs, tasks also run short real commands (tether.process.run),
-- cancelled at random like any other blocking call.
local WITH_PROCS = false
local function sleep_ms(max) return NO_TIMERS and 0 or rnd(0, max) end
local function deadline_ms(max)
  if NO_TIMERS then return chance(0.5) and 0 or 10000 end
  return rnd(0, max)
end

local gen_ops

-- The plan of a daemon: loops (sleep/checkpoint) until cancelled or for a
-- few rounds; may raise from its cleanup.
local function gen_daemon()
  return {
    daemon = true,
    rounds = chance(0.3) and rnd(1, 5) or math.huge,
    sleep_ms = sleep_ms(2),
    cleanup_raise = chance(0.2) and fail_kind(false) or nil,
  }
end

-- `env`: depth (group nesting), groups (array, [1] = the context's own
-- group: { limited = bool }), is_body (this context runs groups[1]'s body),
-- nest (scope nesting), budget (shared: tasks left), small (fan-out child).
local function gen_child_env(env, k)
  local groups = {}
  for i = k, #env.groups do groups[#groups + 1] = env.groups[i] end
  return { depth = env.depth, groups = groups, is_body = false, nest = 0, budget = env.budget }
end

-- Which group a spawn from `env` may target: 1 = its own, k = the (k-1)th
-- ancestor.  A limited group takes spawns from its own body only (a task
-- waiting for a slot that it or its ancestors hold would deadlock).
local function pick_target(env)
  local ok = {}
  for k = 1, #env.groups do
    if not env.groups[k].limited or (k == 1 and env.is_body) then ok[#ok + 1] = k end
  end
  if #ok == 0 then return nil end
  if chance(0.7) and ok[1] == 1 then return 1 end
  return ok[rnd(1, #ok)]
end

local function gen_group(env)
  local limited = chance(0.2)
  local node = {
    op = "group",
    limit = limited and rnd(1, 4) or nil,
    policy = chance(0.25) and "supervisor" or (chance(0.3) and "strict" or nil),
    catch_all = chance(0.1),
  }
  local genv = { limited = limited }
  local groups = { genv }
  for i = 1, #env.groups do groups[#groups + 1] = env.groups[i] end
  local benv = { depth = env.depth + 1, groups = groups, is_body = true, nest = 0, budget = env.budget }
  node.body = gen_ops(benv, rnd(2, 9), chance(env.depth == 0 and 1 or 0.7))
  return node
end

local HANDLER_MATCHERS = {
  { "class", 3 }, { "subclass", 1 }, { "error", 1 }, { "timeout", 1 }, { "pattern", 3 },
  { "pred_table", 2 }, { "pred_nil", 1 }, { "pred_false", 1 }, { "list", 2 }, { "cancelled", 1 },
}

local function gen_scoped(env)
  return gen_ops({ depth = env.depth, groups = env.groups, is_body = env.is_body,
                   nest = env.nest + 1, budget = env.budget }, rnd(0, 4))
end

-- A sequence of operations for one context.
function gen_ops(env, nmax, lead_spawn)
  local ops = {}
  local n = rnd(0, nmax or 6)
  local nspawned = 0
  for i = 1, n + (lead_spawn and 1 or 0) do
    local deep_ok = env.nest < MAX_NEST and not env.small
    local can_spawn = env.budget.tasks > 0
    local what = (i == 1 and lead_spawn and can_spawn) and "spawn" or pick {
      { "sleep", 14 }, { "checkpoint", 12 }, { "yield", 3 }, { "gc", 2 },
      { "spawn", can_spawn and (env.is_body and 40 or 20) or 0 },
      { "start", (can_spawn and not env.small) and 4 or 0 },
      { "group", (env.depth < MAX_DEPTH and deep_ok) and 12 or 0 },
      { "catch", (env.depth < MAX_DEPTH and deep_ok) and 2 or 0 },
      { "fail", env.is_body and 1 or 2.5 },
      { "tcancel", nspawned > 0 and 3 or 0 },
      { "gcancel", 1.5 }, { "scancel", 1.5 },
      { "move_on", deep_ok and 3 or 0 }, { "fail_after", deep_ok and 2 or 0 },
      { "scope", deep_ok and 3 or 0 }, { "shield", deep_ok and 2 or 0 },
      { "cleanup", deep_ok and 3 or 0 }, { "close", deep_ok and 3 or 0 },
      { "wait", nspawned > 0 and 3 or 0 }, { "stale", 1 },
      { "chan", 2 }, { "acquire", 3 },
      { "proc", WITH_PROCS and 2.5 or 0 },
    }
    local op
    if what == "sleep" then
      op = { op = "sleep", ms = sleep_ms(3) }
    elseif what == "proc" then
      -- a short real command, cancelled at random by whatever cancels its task
      op = { op = "proc", cmd = pick { { "true", 3 }, { "sleep", 3 }, { "cat", 2 }, { "group", 1 } },
             ms = rnd(1, 30) }
    elseif what == "checkpoint" or what == "yield" then
      op = { op = what }
    elseif what == "gc" then
      op = { op = "gc", full = chance(0.05) }
    elseif what == "spawn" then
      local k = pick_target(env)
      if k then
        local count = 1
        if env.is_body and chance((i == 1 and lead_spawn) and 0.5 or 0.2) then count = rnd(2, 50) end
        count = math.min(count, env.budget.tasks)
        env.budget.tasks = env.budget.tasks - count
        op = { op = "spawn", into = k, children = {} }
        for i = 1, count do
          local cenv = gen_child_env(env, k)
          if count > 3 or env.budget.tasks <= 0 then cenv.small = true end
          if chance(0.08) and not env.groups[k].limited then
            op.children[i] = gen_daemon()
          else
            op.children[i] = { ops = gen_ops(cenv, cenv.small and 3 or 6) }
            nspawned = nspawned + 1
          end
        end
      end
    elseif what == "start" then
      local k = pick_target(env)
      if k then
        env.budget.tasks = env.budget.tasks - 1
        local pre = {}
        for i = 1, rnd(0, 2) do pre[i] = { op = chance(0.5) and "sleep" or "checkpoint", ms = sleep_ms(2) } end
        local mode = pick { { "ok", 7 }, { "fail_before", 1.5 }, { "no_started", 1.5 } }
        op = { op = "start", into = k, pre = pre, mode = mode, catch_pre = chance(0.5),
               fail = fail_kind(false) }
        if mode == "ok" then op.post = gen_ops(gen_child_env(env, k), 5) end
        nspawned = nspawned + 1
      end
    elseif what == "group" then
      op = gen_group(env)
    elseif what == "catch" then
      op = { op = "catch", group = gen_group(env), handlers = {} }
      for i = 1, rnd(1, 3) do
        op.handlers[i] = { matcher = pick(HANDLER_MATCHERS), raise = chance(0.25) and fail_kind(false) or nil,
                           block = chance(0.2) }
      end
    elseif what == "fail" then
      op = { op = "fail", kind = fail_kind(true), level = chance(0.5) and 1 or 0 }
    elseif what == "chan" then
      local caps = { 0, 1, 3, math.huge }
      op = { op = "chan", cap = caps[rnd(1, #caps)], n = rnd(1, 30), yields = {} }
      local p = rnd() * 0.5
      for k = 1, op.n do op.yields[k] = chance(p) end
    elseif what == "acquire" then
      op = { op = "acquire", which = pick { { "lock", 1 }, { "sem", 1 }, { "lim", 1 } }, ms = sleep_ms(1) }
    elseif what == "tcancel" or what == "wait" then
      op = { op = what, pick = rnd(1, 1000) }
    elseif what == "gcancel" then
      op = { op = "gcancel", pick = chance(0.6) and 1 or rnd(1, 1000) }
    elseif what == "scancel" or what == "stale" then
      op = { op = what, pick = rnd(1, 1000) }
    elseif what == "move_on" or what == "fail_after" then
      op = { op = what, ms = deadline_ms(5), body = gen_scoped(env) }
    elseif what == "scope" then
      op = { op = "scope", timeout_ms = chance(0.5) and deadline_ms(5) or nil, shield = chance(0.2),
             body = gen_scoped(env) }
    elseif what == "shield" then
      op = { op = "shield", body = gen_scoped(env) }
    elseif what == "cleanup" or what == "close" then
      op = { op = what, body = gen_scoped(env), block = chance(0.3), gc = chance(0.1),
             raise = chance(0.3) and fail_kind(what == "cleanup") or nil, ms = sleep_ms(2) }
    end
    if op then
      ops[#ops + 1] = op
      if op.op == "fail" then break end
    end
  end
  local last = ops[#ops]
  if not (last and last.op == "fail") and chance(env.is_body and 0.05 or 0.2) then
    ops[#ops + 1] = { op = "fail", kind = fail_kind(true), level = chance(0.5) and 1 or 0 }
  end
  return ops
end

-- The plan of one tree for `seed`.  opts.max_tasks bounds the tasks (default
-- 150); opts.timers = false makes a tree that arms no timer that comes due.
function M.generate(seed, opts)
  opts = opts or {}
  NO_TIMERS = opts.timers == false
  WITH_PROCS = opts.procs == true
  math.randomseed(seed)
  local budget = { tasks = rnd(5, opts.max_tasks or 150) }
  local planned = budget.tasks
  local root = gen_group({ depth = 0, groups = { { limited = false } }, is_body = true, nest = 0, budget = budget })
  root.catch_all = false
  return { seed = seed, root = root, planned_tasks = planned - budget.tasks, procs = WITH_PROCS }
end

-- A readable listing of a plan (for replays).
function M.describe(plan)
  local out = {}
  local function line(depth, s) out[#out + 1] = string.rep("  ", depth) .. s end
  local walk
  local function fields(op)
    local parts = {}
    for k, v in pairs(op) do
      if type(v) ~= "table" and k ~= "op" then parts[#parts + 1] = k .. "=" .. tostring(v) end
    end
    table.sort(parts)
    return table.concat(parts, " ")
  end
  function walk(ops, depth)
    for _, op in ipairs(ops) do
      line(depth, op.op .. " " .. fields(op))
      if op.body then walk(op.body, depth + 1) end
      if op.group then line(depth + 1, "group " .. fields(op.group)); walk(op.group.body, depth + 2) end
      if op.handlers then
        for i, h in ipairs(op.handlers) do line(depth + 1, ("handler %d %s"):format(i, fields(h))) end
      end
      if op.pre then line(depth + 1, "pre:"); walk(op.pre, depth + 2) end
      if op.post then line(depth + 1, "post:"); walk(op.post, depth + 2) end
      if op.children then
        for i, c in ipairs(op.children) do
          if c.daemon then line(depth + 1, ("child %d daemon %s"):format(i, fields(c)))
          else line(depth + 1, ("child %d:"):format(i)); walk(c.ops, depth + 2) end
        end
      end
    end
  end
  line(0, "tree seed " .. tostring(plan.seed))
  line(0, "group " .. fields(plan.root))
  walk(plan.root.body, 1)
  return table.concat(out, "\n")
end

-- ===========================================================================
-- The interpreter
-- ===========================================================================
--
-- A context (ctx) is where test code runs: a task's function or a group's
-- body.  It knows:
--   T       the tree's state (ledger, counters)
--   task    the record of the task it runs in
--   chain   the enclosing scopes, innermost first, as a linked list of
--           { rec, next }; records are tasks, groups and scopes
--   group   the group its errors go to
--   groups  the groups it may spawn into (linked list, own group first)
--   rc      shared by the context and its scoped parts: nil_pending
--   spawned the handles it spawned (for t:cancel and t:wait)

local function cons(rec, nxt) return { rec = rec, next = nxt } end

local function nth(list, k)
  local i = 1
  while list do
    if i == k then return list.rec end
    list, i = list.next, i + 1
  end
  return nil
end

local function viol(T, fmt, ...)
  T.ledger:violation(fmt, ...)
end

local function chain_names(chain)
  local names = {}
  while chain and #names < 12 do
    names[#names + 1] = chain.rec.name .. (chain.rec.shield and "(shield)" or "")
    chain = chain.next
  end
  return table.concat(names, " < ")
end

-- Does some scope of `chain` (up to and including the first shield) explain
-- the Cancelled `e`?
local function explains(chain, e)
  local reason, source = rawget(e, "reason"), rawget(e, "source")
  if type(reason) ~= "string" then return false end
  local kind, name = reason:match("^(%a+):(.+)$")
  local failed = reason:match("^task '(.*)' failed$")
  while chain do
    local r = chain.rec
    if kind == "gcancel" then
      if r.kind == "group" and r.name == name then return true end
    elseif kind == "tcancel" then
      if r.kind == "task" and r.name == name then return true end
    elseif kind == "scancel" then
      if r.kind == "scope" and r.name == name then return true end
    elseif reason == "deadline exceeded" then
      if r.deadline then return true end
    elseif failed then
      if r.kind == "group" and (source == failed) and
         ((r.strict and r.members[failed]) or r.body_task == failed) then
        return true
      end
    elseif reason == "daemon task no longer needed" then
      if r.kind == "task" and r.daemon then return true end
    end
    if r.shield then return false end
    chain = chain.next
  end
  return false
end

local function check_explained(T, chain, e, where)
  if not explains(chain, e) then
    viol(T, "Cancelled (reason %s, source %s) %s is not explained by an enclosing cancelled scope [%s]",
      safe(rawget(e, "reason")), safe(rawget(e, "source")), where, chain_names(chain))
  end
end

-- Re-raise `e` after checking it: a Cancelled must be explained by `chain`
-- (the scopes outside the boundary it crossed).
-- NOTE: when several enclosing scopes are cancelled, the outermost one catches
-- (contract section 2), so an inner scope's Cancelled raised before the outer
-- cancel may cross an inner boundary: it is explained when the code outside
-- is cancelled too (a checkpoint there raises a Cancelled the chain explains).
local function rethrow(T, chain, e, where)
  if is_cancelled(e) and not explains(chain, e) then
    local ok, e2 = pcall(tether.checkpoint)
    if ok or not is_cancelled(e2) or not explains(chain, e2) then
      check_explained(T, chain, e, where)
    end
  end
  error(e, 0)
end

local function derive(ctx, rec)
  return { T = ctx.T, task = ctx.task, chain = cons(rec, ctx.chain), group = ctx.group, groups = ctx.groups,
           rc = ctx.rc, spawned = ctx.spawned }
end

-- Raise a new error of `kind` from `ctx`; `parent` overrides the expected
-- ErrorGroup message (errors of catch handlers).
local function raise_new(ctx, kind, level, parent)
  local T, L = ctx.T, ctx.T.ledger
  local gname = ctx.group.name
  T.raised_kinds[kind] = (T.raised_kinds[kind] or 0) + 1
  if kind == "nil" then
    L:raise_nil(gname)
    ctx.rc.nil_pending = true
    error(nil)
  elseif kind == "false" then
    L:raise_false(gname)
    error(false)
  end
  local id = L:new_id()
  parent = parent or group_msg(gname)
  local v
  if kind == "string" then
    v = ("<<E%d>> failed in %s"):format(id, ctx.task.name)
  elseif kind == "table" then
    v = { lid = id, tbl = true }
  else
    v = (chance(0.5) and MyErr or SubErr)("<<E" .. id .. ">>", { lid = id })
  end
  L:raise(id, v, kind, parent)
  if kind == "string" and level == 1 then error(v, 2) end
  error(v, 0)
end

-- The test's own code drops `e` (a cleanup raising a new error replaces it).
local function supersede(ctx, e)
  if e == nil then ctx.rc.nil_pending = false end
  ctx.T.ledger:catch(e, ctx.group.name, "(replaced by a cleanup)")
end

local run_ops, run_group

-- A checkpoint-like call: a Cancelled it raises must be explained.
local function blocking(ctx, what, fn, ...)
  local r = pack(pcall(fn, ...))
  if not r[1] then
    local e = r[2]
    if not is_cancelled(e) then viol(ctx.T, "%s raised a non-cancellation error: %s", what, safe(e)) end
    rethrow(ctx.T, ctx.chain, e, "raised by " .. what)
  end
  return unpack(r, 2, r.n)
end

-- After a group closed: its tasks are all done and agree with what they did.
local function check_kids(T, rec)
  for _, kid in ipairs(rec.kids) do
    local h, c = kid.h, kid.ctx
    local name = c.task.name
    if not h then
      -- a g:start whose task never handed over its handle: only legal if it never ran
      if c.started then viol(T, "task %s of %s ran but its handle was never seen", name, rec.name) end
      goto continue
    end
    if not h:done() then
      viol(T, "orphan: task %s (%s) is not done after its group %s exited", name, safe(h), rec.name)
      goto continue
    end
    if not c.started then viol(T, "task %s of %s finished without ever running", name, rec.name) end
    local r = c.outcome
    if not r then
      viol(T, "task %s is done but its function never returned or raised", name)
    elseif r[1] then
      if h:failed() or h:cancelled() then viol(T, "task %s returned but failed()=%s cancelled()=%s", name,
        tostring(h:failed()), tostring(h:cancelled())) end
      local ok, v = pcall(h.result, h)
      if not ok or v ~= name then viol(T, "task %s: t:result() gave %s, %s", name, tostring(ok), safe(v)) end
    elseif is_cancelled(r[2]) then
      if not h:cancelled() or h:failed() then viol(T, "task %s was cancelled but cancelled()=%s failed()=%s",
        name, tostring(h:cancelled()), tostring(h:failed())) end
      if not rawequal(h:error(), r[2]) then viol(T, "task %s: t:error() is not its Cancelled", name) end
    else
      if not h:failed() or h:cancelled() then viol(T, "task %s failed but failed()=%s cancelled()=%s",
        name, tostring(h:failed()), tostring(h:cancelled())) end
      if not rawequal(h:error(), r[2]) then viol(T, "task %s: t:error() %s is not its error %s", name,
        safe(h:error()), safe(r[2])) end
      local ok, msg = pcall(h.result, h)
      if ok or not tostring(msg):find("failed", 1, true) then
        viol(T, "task %s: t:result() on a failed task gave %s, %s", name, tostring(ok), safe(msg))
      end
    end
    ::continue::
  end
end

-- The body of every task: run the plan, remember how it ended.
local function task_main(ctx, plan)
  local T, g = ctx.T, ctx.group
  ctx.started = true
  ctx.handle = tether.current_task()
  g.running = g.running + 1
  if g.limit and g.running > g.limit then
    viol(T, "group %s has limit %d but %d of its tasks run at once", g.name, g.limit, g.running)
  end
  local r
  if plan.daemon then r = pack(pcall(M.run_daemon, ctx, plan)) else r = pack(pcall(run_ops, ctx, plan.ops)) end
  g.running = g.running - 1
  ctx.outcome = r
  if not r[1] then rethrow(T, ctx.chain, r[2], "ended task " .. ctx.task.name) end
  return ctx.task.name
end

function M.run_daemon(ctx, plan)
  local T = ctx.T
  local t0 = tether.now()
  local guard <close> = setmetatable({}, { __close = function(_, err)
    if plan.cleanup_raise and is_cancelled(err) then raise_new(ctx, plan.cleanup_raise, 0) end
  end })
  local i = 0
  while i < plan.rounds do
    i = i + 1
    if tether.now() - t0 > T.daemon_limit then
      viol(T, "daemon %s was never cancelled (%g s)", ctx.task.name, tether.now() - t0)
      return
    end
    if plan.sleep_ms > 0 then blocking(ctx, "tether.sleep", tether.sleep, plan.sleep_ms / 1000)
    else blocking(ctx, "tether.checkpoint", tether.checkpoint) end
  end
end

local function new_task_ctx(T, target, daemon)
  T.ntasks = T.ntasks + 1
  local trec = { kind = "task", name = "T" .. T.ntasks, daemon = daemon or false }
  return { T = T, task = trec, chain = cons(trec, cons(target, target.chain)), group = target,
           groups = target.groups_self, rc = {}, spawned = {} }
end

local OPS = {}

function OPS.sleep(ctx, op) blocking(ctx, "tether.sleep", tether.sleep, op.ms / 1000) end

-- A real child process (opts.procs): it must succeed, or be cancelled.
local PROC_ARGV = {
  ["true"] = function() return { "true" } end,
  sleep = function(op) return { "sleep", ("%.3f"):format(op.ms / 1000) } end,
  cat = function() return { "cat" } end,
  group = function(op) return { "sh", "-c", ("sleep %.3f & wait"):format(op.ms / 1000) } end,
}
function OPS.proc(ctx, op)
  local popts = { grace = 0.2, kill_group = op.cmd == "group" }
  if op.cmd == "cat" then popts.stdin = ("x"):rep(op.ms * 1000) end
  local r = blocking(ctx, "tether.process.run", tether.process.run, PROC_ARGV[op.cmd](op), popts)
  if r.exit_code ~= 0 then viol(ctx.T, "process.run of %s returned exit code %s", op.cmd, safe(r.exit_code)) end
  if op.cmd == "cat" and #r.stdout ~= op.ms * 1000 then
    viol(ctx.T, "cat gave back %d bytes of %d", #r.stdout, op.ms * 1000)
  end
end

function OPS.checkpoint(ctx) blocking(ctx, "tether.checkpoint", tether.checkpoint) end

function OPS.yield(ctx)
  local n = select("#", coroutine.yield("ignored"))
  if n ~= 0 then viol(ctx.T, "coroutine.yield() inside a task returned %d values", n) end
end

function OPS.gc(_, op)
  if op.full then collectgarbage() else collectgarbage("step") end
end

function OPS.spawn(ctx, op)
  local T = ctx.T
  local target = nth(ctx.groups, op.into)
  if target.closed then
    viol(T, "test bug: %s spawns into the closed ancestor %s", ctx.task.name, target.name)
    return
  end
  for _, plan in ipairs(op.children) do
    local cctx = new_task_ctx(T, target, plan.daemon)
    local name = cctx.task.name
    target.members[name] = true
    target.kids[#target.kids + 1] = { ctx = cctx }
    local kid = target.kids[#target.kids]
    local r = pack(pcall(target.handle.spawn, target.handle, { name = name, daemon = plan.daemon or nil },
                         task_main, cctx, plan))
    if not r[1] then
      target.kids[#target.kids] = nil
      if not is_cancelled(r[2]) or not target.limit then
        viol(T, "g:spawn into %s raised %s", target.name, safe(r[2]))
      end
      rethrow(T, ctx.chain, r[2], "raised by g:spawn (limit)")
    end
    local h = r[2]
    kid.h = h
    if h.name ~= name then viol(T, "spawned task named %s has name %s", name, safe(h.name)) end
    ctx.spawned[#ctx.spawned + 1] = { h = h, rec = cctx.task, daemon = plan.daemon }
  end
end

local function start_main(started, ctx, op)
  local T = ctx.T
  local target = ctx.start_target
  ctx.started = true
  ctx.handle = tether.current_task()
  target.running = target.running + 1
  if target.limit and target.running > target.limit then
    viol(T, "group %s has limit %d but %d of its tasks run at once", target.name, target.limit, target.running)
  end
  local r = pack(pcall(function()
    run_ops(ctx, op.pre)
    if op.mode == "fail_before" then
      raise_new(ctx, op.fail, 0)
    elseif op.mode == "no_started" then
      return
    end
    -- from here on the task belongs to the group
    target.members[ctx.task.name] = true
    ctx.chain = cons(ctx.task, cons(target, target.chain))
    ctx.group = target
    ctx.groups = target.groups_self
    ctx.after_started = true
    started(ctx.task.name .. "!")
    local ok, e = pcall(started, "again")
    if ok or not tostring(e):find("already", 1, true) then
      viol(T, "calling started() twice gave %s, %s", tostring(ok), safe(e))
    end
    run_ops(ctx, op.post)
  end))
  target.running = target.running - 1
  ctx.outcome = r
  if not r[1] then rethrow(T, ctx.chain, r[2], "ended start task " .. ctx.task.name) end
  return ctx.task.name
end

function OPS.start(ctx, op)
  local T = ctx.T
  local target = nth(ctx.groups, op.into)
  if target.closed then
    viol(T, "test bug: %s starts into the closed ancestor %s", ctx.task.name, target.name)
    return
  end
  T.ntasks = T.ntasks + 1
  local trec = { kind = "task", name = "T" .. T.ntasks, daemon = false }
  -- before started(): runs under the caller's scopes, its errors go to the caller
  local cctx = { T = T, task = trec, chain = cons(trec, ctx.chain), group = ctx.group, groups = ctx.groups,
                 rc = {}, spawned = {}, start_target = target }
  local kid = { ctx = cctx }
  target.kids[#target.kids + 1] = kid
  local r = pack(pcall(target.handle.start, target.handle, { name = trec.name }, start_main, cctx, op))
  kid.h = cctx.handle
  if r[1] then
    if op.mode ~= "ok" or r[2] ~= trec.name .. "!" then
      viol(T, "g:start (mode %s) returned %s", op.mode, safe(r[2]))
    end
    ctx.spawned[#ctx.spawned + 1] = { h = cctx.handle, rec = trec }
    return
  end
  local e = r[2]
  if is_cancelled(e) then
    return rethrow(T, ctx.chain, e, "raised by g:start")
  end
  if op.mode == "fail_before" and cctx.outcome and not cctx.outcome[1] and rawequal(e, cctx.outcome[2]) then
    -- the task's own error, raised in the caller: the caller now owns it
    if op.catch_pre then
      T.ledger:catch(e, ctx.group.name, "(caught from g:start)")
      return
    end
    error(e, 0)
  end
  if op.mode == "no_started" and cctx.outcome and cctx.outcome[1] then
    if not tostring(e):find("without calling started", 1, true) then
      viol(T, "g:start of a task that never called started() raised %s", safe(e))
    end
    return
  end
  if cctx.outcome and not cctx.outcome[1] and rawequal(e, cctx.outcome[2]) then
    -- any other error of the task before started(): flows on in the caller
    error(e, 0)
  end
  viol(T, "g:start (mode %s) raised an unexpected %s", op.mode, safe(e))
  error(e, 0)
end

function run_group(ctx, op)
  local T = ctx.T
  T.ngroups = T.ngroups + 1
  local name = "G" .. T.ngroups
  local rec = { kind = "group", name = name, strict = op.policy ~= "supervisor", limit = op.limit,
                members = {}, kids = {}, chain = ctx.chain, groups = ctx.groups, running = 0,
                body_task = tether.current_task().name, closed = false }
  rec.groups_self = cons(rec, ctx.groups)
  local body_done = false
  local opts = { name = name, limit = op.limit, policy = op.policy }
  local r = pack(pcall(tether.with_group, opts, function(g)
    rec.handle = g
    T.all_groups[#T.all_groups + 1] = rec
    if g.name ~= name then viol(T, "group %s has name %s", name, safe(g.name)) end
    local bctx = { T = T, task = ctx.task, chain = cons(rec, ctx.chain), group = rec, groups = rec.groups_self,
                   rc = {}, spawned = {} }
    run_ops(bctx, op.body)
    body_done = true
    return name, nil, 42
  end))
  rec.closed = true
  check_kids(T, rec)
  if rec.running ~= 0 then viol(T, "group %s exited with %d of its tasks still running", name, rec.running) end
  if r[1] then
    if body_done then
      if r.n ~= 4 or r[2] ~= name or r[3] ~= nil or r[4] ~= 42 then
        viol(T, "with_group %s returned %d values (%s, %s, %s), not the body's", name, r.n - 1,
          safe(r[2]), safe(r[3]), safe(r[4]))
      end
    elseif r.n ~= 1 then
      viol(T, "with_group %s returned %d values although its body was interrupted", name, r.n - 1)
    end
    return
  end
  local e = r[2]
  if is_group(e) then
    if e.message ~= group_msg(name) then viol(T, "ErrorGroup of %s has message %s", name, safe(e.message)) end
    if op.catch_all then
      T.ledger:catch(e, ctx.group.name, "(caught around with_group " .. name .. ")")
      return
    end
  elseif not is_cancelled(e) then
    viol(T, "with_group %s raised something that is neither an ErrorGroup nor a Cancelled: %s", name, safe(e))
  end
  rethrow(T, ctx.chain, e, "escaped with_group " .. name)
end
OPS.group = run_group

local function make_matcher(spec)
  if spec == "class" then return MyErr end
  if spec == "subclass" then return SubErr end
  if spec == "error" then return tether.Error end
  if spec == "timeout" then return tether.TimeoutError end
  if spec == "cancelled" then return tether.Cancelled end
  if spec == "pattern" then return "<<E%d+>>" end
  if spec == "list" then return { SubErr, "<<E%d+>> failed" } end
  return spec -- a predicate, made below
end

function OPS.catch(ctx, op)
  local T = ctx.T
  local handlers = {}
  for i, h in ipairs(op.handlers) do
    local m = make_matcher(h.matcher)
    if type(m) == "string" and m:sub(1, 5) == "pred_" then
      local which = m
      m = function(e)
        if is_cancelled(e) then viol(T, "a predicate matcher was given a Cancelled") end
        if which == "pred_table" then return type(e) == "table" and rawget(e, "tbl") == true end
        if which == "pred_nil" then return e == nil end
        return e == false
      end
    end
    handlers[i] = { m, function(eg)
      if not is_group(eg) then viol(T, "a catch handler was given %s, not an ErrorGroup", safe(eg)) end
      T.ledger:catch(eg, ctx.group.name, "(handled by catch)", h.matcher == "cancelled")
      if h.block then tether.checkpoint() end
      if h.raise then raise_new(ctx, h.raise, 0, Ledger.HANDLER_MSG) end
    end }
  end
  local r = pack(pcall(tether.catch, function() return run_group(ctx, op.group) end, handlers))
  if not r[1] then
    local e = r[2]
    if not is_group(e) and not is_cancelled(e) then
      viol(T, "tether.catch raised something that is neither an ErrorGroup nor a Cancelled: %s", safe(e))
    end
    rethrow(T, ctx.chain, e, "escaped tether.catch")
  end
end

function OPS.fail(ctx, op) raise_new(ctx, op.kind, op.level) end

-- A channel between a producer and a consumer in a group of their own, with
-- a ledger of the values: received in order, each once, and every value
-- whose send returned either received or still buffered when a
-- cancellation (of an enclosing scope: the test's) closed the consumer.
function OPS.chan(ctx, op)
  local T = ctx.T
  local send, recv = tether.channel(op.cap)
  local nsent, got, buffered = 0, {}, 0
  local r = pack(pcall(tether.with_group, function(g)
    g:spawn(function()
      local _ <close> = send
      for i = 1, op.n do
        local ok, e = pcall(send.send, send, i)
        if not ok then
          if tether.BrokenResourceError:is(e) then return end     -- the consumer was cancelled
          if not is_cancelled(e) then viol(T, "send raised %s", safe(e)) end
          error(e, 0)
        end
        nsent = nsent + 1
        if op.yields[i] then tether.checkpoint() end
      end
    end)
    g:spawn(function()
      local _ <close> = setmetatable({}, { __close = function()
        buffered = recv:statistics().current_buffer_used
        recv:close()
      end })
      for v in recv do got[#got + 1] = v end
    end)
  end))
  for i, v in ipairs(got) do
    if v ~= i then viol(T, "channel: value %d received at position %d (order or duplicate)", v, i) break end
  end
  if #got + buffered ~= nsent then
    viol(T, "channel: %d sends returned, %d values received, %d left buffered", nsent, #got, buffered)
  end
  if r[1] then
    if nsent ~= op.n or #got ~= op.n then viol(T, "channel: finished with %d sent, %d received of %d", nsent, #got, op.n) end
    return
  end
  if not is_cancelled(r[2]) then viol(T, "the channel's group raised %s", safe(r[2])) end
  rethrow(T, ctx.chain, r[2], "escaped the channel's group")
end

-- Hold the tree's shared Lock, Semaphore(2) or CapacityLimiter(2) over a
-- sleep or checkpoint: never more holders than allowed; all free at the end.
function OPS.acquire(ctx, op)
  local T = ctx.T
  local obj, max = T.sync[op.which], op.which == "lock" and 1 or 2
  local guard = blocking(ctx, op.which .. ":acquire", obj.acquire, obj)
  local _ <close> = guard
  T.sync.holders[op.which] = T.sync.holders[op.which] + 1
  local _ <close> = setmetatable({}, { __close = function()
    T.sync.holders[op.which] = T.sync.holders[op.which] - 1
  end })
  if T.sync.holders[op.which] > max then
    viol(T, "%d tasks hold the tree's %s at once (at most %d)", T.sync.holders[op.which], op.which, max)
  end
  if op.ms > 0 then blocking(ctx, "tether.sleep", tether.sleep, op.ms / 1000)
  else blocking(ctx, "tether.checkpoint", tether.checkpoint) end
end

function OPS.tcancel(ctx, op)
  if #ctx.spawned == 0 then return end
  local s = ctx.spawned[(op.pick - 1) % #ctx.spawned + 1]
  if s and s.h then s.h:cancel("tcancel:" .. s.rec.name) end
end

function OPS.wait(ctx, op)
  local cands = {}
  for _, s in ipairs(ctx.spawned) do if not s.daemon and s.h then cands[#cands + 1] = s end end
  if #cands == 0 then return end
  local s = cands[(op.pick - 1) % #cands + 1]
  blocking(ctx, "t:wait", s.h.wait, s.h)
  if not s.h:done() then viol(ctx.T, "t:wait returned but task %s is not done", s.rec.name) end
end

function OPS.gcancel(ctx, op)
  local n, l = 0, ctx.groups
  while l do n, l = n + 1, l.next end
  local rec = nth(ctx.groups, (op.pick - 1) % n + 1)
  if rec.kind == "group" and rec.handle then
    rec.gcancelled = true
    rec.handle:cancel("gcancel:" .. rec.name)
    if not rec.handle.cancel_called then viol(ctx.T, "g:cancel on open group %s left cancel_called false", rec.name) end
  end
end

function OPS.scancel(ctx, op)
  local cands, l = {}, ctx.chain
  while l do
    if l.rec.obj then cands[#cands + 1] = l.rec end
    l = l.next
  end
  if #cands == 0 then return end
  local rec = cands[(op.pick - 1) % #cands + 1]
  rec.obj:cancel("scancel:" .. rec.name)
  rec.scancelled = true
end

-- Spawn into any group of the tree: a clear error if it closed, else a
-- small task (only into unlimited groups: see pick_target).
function OPS.stale(ctx, op)
  local T = ctx.T
  if #T.all_groups == 0 then return end
  local rec = T.all_groups[(op.pick - 1) % #T.all_groups + 1]
  if not rec or not rec.handle then return end
  if rec.closed then
    local ok, e = pcall(rec.handle.spawn, rec.handle, function() end)
    if ok or not tostring(e):find("closed", 1, true) then
      viol(T, "g:spawn into the closed group %s gave %s, %s", rec.name, tostring(ok), safe(e))
    end
    return
  end
  if rec.limit then return end
  local cctx = new_task_ctx(T, rec, false)
  rec.members[cctx.task.name] = true
  local kid = { ctx = cctx }
  rec.kids[#rec.kids + 1] = kid
  kid.h = rec.handle:spawn({ name = cctx.task.name }, task_main, cctx, { ops = { { op = "checkpoint" } } })
end

local function new_scope_rec(ctx, fields)
  local T = ctx.T
  T.nscopes = T.nscopes + 1
  fields.kind = "scope"
  fields.name = "S" .. T.nscopes
  return fields
end

function OPS.move_on(ctx, op)
  local T = ctx.T
  local rec = new_scope_rec(ctx, { deadline = true })
  local t0 = tether.now()
  local r = pack(pcall(tether.move_on_after, op.ms / 1000, function()
    run_ops(derive(ctx, rec), op.body)
    return "moved"
  end))
  if not r[1] then return rethrow(T, ctx.chain, r[2], "escaped move_on_after " .. rec.name) end
  if r[2] == true then
    if r[3] ~= "moved" then viol(T, "move_on_after returned true without fn's results") end
  elseif r[2] == false then
    if tether.now() - t0 < op.ms / 1000 - 1e-6 then
      viol(T, "move_on_after(%g ms) gave up after only %g ms", op.ms, (tether.now() - t0) * 1000)
    end
  else
    viol(T, "move_on_after returned %s", safe(r[2]))
  end
end

function OPS.fail_after(ctx, op)
  local T = ctx.T
  local rec = new_scope_rec(ctx, { deadline = true })
  local t0 = tether.now()
  local r = pack(pcall(tether.fail_after, op.ms / 1000, function()
    run_ops(derive(ctx, rec), op.body)
    return "in time"
  end))
  if r[1] then
    if r[2] ~= "in time" then viol(T, "fail_after returned %s, not fn's results", safe(r[2])) end
    return
  end
  local e = r[2]
  if tether.TimeoutError:is(e) and rawget(e, "lid") == nil then
    if tether.now() - t0 < op.ms / 1000 - 1e-6 then
      viol(T, "fail_after(%g ms) timed out after only %g ms", op.ms, (tether.now() - t0) * 1000)
    end
    T.ledger:adopt(e, "timeout", group_msg(ctx.group.name))
    T.raised_kinds.timeout = (T.raised_kinds.timeout or 0) + 1
    error(e, 0)
  end
  rethrow(T, ctx.chain, e, "escaped fail_after " .. rec.name)
end

function OPS.scope(ctx, op)
  local T = ctx.T
  local sc = tether.cancel_scope { timeout = op.timeout_ms and op.timeout_ms / 1000, shield = op.shield }
  local rec = new_scope_rec(ctx, { deadline = op.timeout_ms ~= nil, shield = op.shield, obj = sc })
  local t0 = tether.now()
  local r = pack(pcall(sc.run, sc, function()
    run_ops(derive(ctx, rec), op.body)
    return "scoped"
  end))
  if not r[1] then return rethrow(T, ctx.chain, r[2], "escaped scope:run " .. rec.name) end
  if r[2] == true then
    if r[3] ~= "scoped" then viol(T, "scope:run returned true without fn's results") end
  else
    if not sc.cancel_called or not sc.cancelled_caught then
      viol(T, "scope:run returned false with cancel_called=%s cancelled_caught=%s",
        tostring(sc.cancel_called), tostring(sc.cancelled_caught))
    end
    if not rec.scancelled and (not op.timeout_ms or tether.now() - t0 < op.timeout_ms / 1000 - 1e-6) then
      viol(T, "scope:run %s returned false although nothing cancelled it", rec.name)
    end
  end
end

function OPS.shield(ctx, op)
  local T = ctx.T
  local rec = new_scope_rec(ctx, { shield = true })
  local r = pack(pcall(tether.shield, function()
    run_ops(derive(ctx, rec), op.body)
    return "shielded", 7
  end))
  if not r[1] then return rethrow(T, ctx.chain, r[2], "escaped shield " .. rec.name) end
  if r.n ~= 3 or r[2] ~= "shielded" or r[3] ~= 7 then viol(T, "tether.shield did not return fn's results") end
end

-- pcall-based cleanup: run the body, clean up (maybe blocking, shielded),
-- then re-raise what the body raised or replace it by a new error.
function OPS.cleanup(ctx, op)
  local T = ctx.T
  local r = pack(pcall(run_ops, ctx, op.body))
  if op.block then
    local ok, e = pcall(tether.shield, tether.sleep, op.ms / 1000)
    if not ok then viol(T, "a shielded sleep raised %s", safe(e)) end
  end
  if op.gc then collectgarbage() end
  if not r[1] and is_cancelled(r[2]) then
    check_explained(T, ctx.chain, r[2], "caught by a cleanup")
    local ok, e = pcall(tether.checkpoint)
    if ok then
      viol(T, "a cancellation was swallowed: a checkpoint after catching Cancelled (%s) did not raise",
        safe(rawget(r[2], "reason")))
    elseif not is_cancelled(e) then
      viol(T, "a checkpoint in a cancelled scope raised %s", safe(e))
    end
  end
  if op.raise then
    if not r[1] then supersede(ctx, r[2]) end
    raise_new(ctx, op.raise, 0)
  end
  if not r[1] then error(r[2], 0) end
end

-- <close>-based cleanup: may block (unshielded, the Cancelled swallowed)
-- and may raise, replacing the error it unwinds.
function OPS.close(ctx, op)
  local guard <close> = setmetatable({}, { __close = function(_, err)
    if op.block then pcall(tether.sleep, op.ms / 1000) end
    if op.gc then collectgarbage("step") end
    if op.raise and not (err == nil and ctx.rc.nil_pending) then
      if err ~= nil then supersede(ctx, err) end
      raise_new(ctx, op.raise, 0)
    end
  end })
  run_ops(ctx, op.body)
end

function run_ops(ctx, ops)
  for i = 1, #ops do
    local op = ops[i]
    OPS[op.op](ctx, op)
  end
end

-- ===========================================================================
-- Running a tree
-- ===========================================================================

M.WATCHDOG = 60    -- seconds: a tree that runs longer is reported as hung

-- Run `plan` under tether.run.  Returns a result table (see the top).
function M.run(plan, opts)
  opts = opts or {}
  local T = {
    ledger = Ledger.new(tether), ntasks = 0, ngroups = 0, nscopes = 0, all_groups = {},
    raised_kinds = {}, daemon_limit = opts.daemon_limit or 20,
    sync = { lock = tether.Lock(), sem = tether.Semaphore(2), lim = tether.CapacityLimiter(2),
             holders = { lock = 0, sem = 0, lim = 0 } },
  }
  local hung
  local r = pack(pcall(tether.run, function()
    local root = { kind = "task", name = tether.current_task().name }
    local W = { kind = "group", name = "W", strict = true, members = {}, kids = {}, running = 0,
                body_task = root.name, chain = cons(root, nil) }
    W.groups_self = cons(W, nil)
    T.W = W
    return tether.with_group({ name = "W" }, function(w)
      W.handle = w
      w:spawn({ name = "watchdog", daemon = true }, function()
        tether.sleep(opts.watchdog or M.WATCHDOG)
        hung = tether.dump()
        w:cancel("gcancel:W")
      end)
      local ctx = { T = T, task = root, chain = cons(W, W.chain), group = W, groups = W.groups_self,
                    rc = {}, spawned = {} }
      run_group(ctx, plan.root)
      return "tree done"
    end)
  end))
  local L = T.ledger
  if r[1] then
    if r[2] ~= "tree done" and not (r.n == 1 and T.W.gcancelled) then L:violation("tether.run returned %s, not main's results", safe(r[2])) end
  else
    local e = r[2]
    if is_cancelled(e) then
      L:violation("a Cancelled (reason %s) escaped tether.run", safe(rawget(e, "reason")))
    elseif is_group(e) then
      L:report(e)
    else
      L:violation("tether.run raised something that is not an ErrorGroup: %s", safe(e))
      L:report(e)
    end
  end
  if hung then L:violation("the tree hung for %g s; tether.dump():\n%s", opts.watchdog or M.WATCHDOG, hung) end
  local s = tether.stats()
  if plan.procs then                 -- no child of this process is left, running or zombie
    local f = io.open("/proc/self/stat", "r")
    local pid = f and f:read("l"):match("^(%d+)")
    if f then f:close() end
    local cf = pid and io.open("/proc/self/task/" .. pid .. "/children", "r")
    local kids = cf and cf:read("a") or ""
    if cf then cf:close() end
    if kids:match("%d") then L:violation("child processes left after tether.run: %s", kids) end
  end
  if s.tasks ~= 0 or s.handles ~= 0 or s.timers ~= 0 or s.running ~= false then
    L:violation("after tether.run: stats tasks=%s handles=%s timers=%s running=%s",
      tostring(s.tasks), tostring(s.handles), tostring(s.timers), tostring(s.running))
  end
  if T.sync.lock:locked() or T.sync.sem.value ~= 2 or T.sync.lim.borrowed ~= 0 then
    L:violation("after the tree: the Lock is %s, the Semaphore has %d units, the limiter lends %d tokens",
      T.sync.lock:locked() and "held" or "free", T.sync.sem.value, T.sync.lim.borrowed)
  end
  L:verify()
  return {
    seed = plan.seed, violations = L.violations, tasks = T.ntasks, groups = T.ngroups,
    raised = L.raised, reported = L.reported, caught = L.caught, kinds = T.raised_kinds,
  }
end

return M
