/* sched.c - the scheduler: ready queue, the one resume site, tether.run, sleep and checkpoints */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "io.h"

const char tt_sched_key = 0;

/* ---- static helpers --------------------------------------------------- */

static void ts_on_close(uv_handle_t *h) {
  tt_sched *S = h->data;
  S->nhandles--;
}

/*
** The run loop fires due entries itself after uv_run returns; the callback
** only makes sure uv_run does return.  NOTE: libuv runs due timers at the
** top of uv_run, before it polls: a timer that came due just before would
** fire there and leave the poll unbounded (the SIGINT watcher keeps the
** loop alive).  uv_stop makes that iteration poll without blocking.
*/
static void ts_on_timer(uv_timer_t *h) {
  uv_stop(h->loop);
}

static void ts_on_sigint(uv_signal_t *h, int signum) {
  tt_sched *S = h->data;
  (void)signum;
  /* A second SIGINT must end the process at once, whatever the loop does. */
  uv_signal_stop(h);
  signal(SIGINT, SIG_DFL);
  S->interrupted = 1;
  if (S->root && S->root->state != TT_T_DONE)
    ts_cancel(S, &S->root->root, TT_REASON_INTERRUPT);
}

/* Is anything but our SIGINT watcher able to wake the loop? */
static int ts_loop_alive(tt_sched *S) {
  int alive;
  uv_unref((uv_handle_t *)&S->sigint);
  alive = uv_loop_alive(S->loop);
  uv_ref((uv_handle_t *)&S->sigint);
  return alive;
}

/* Fire every due timer entry: wake sleepers, cancel scopes past deadline. */
static void ts_fire_timers(tt_sched *S) {
  tt_timer *tm;
  uint64_t now;
  if (S->nheap == 0) return;
  now = ts_now();
  while ((tm = ts_timer_pop_due(S, now)) != NULL) {
    if (tm->kind == TT_TIMER_SLEEP)
      ts_wake((tt_task *)((char *)tm - offsetof(tt_task, timer)), 0);
    else
      ts_cancel(S, (tt_scope *)((char *)tm - offsetof(tt_scope, timer)),
                TT_REASON_DEADLINE);
  }
}

/* Arm the libuv timer for the earliest entry; 0 when there is none. */
static int ts_arm_timer(tt_sched *S) {
  uint64_t next = ts_timer_next(S), now, ms;
  if (next == TT_NEVER) {
    uv_timer_stop(&S->timer);
    return 0;
  }
  now = ts_now();
  ms = next > now ? (next - now + 999999) / 1000000 : 0;
  uv_update_time(S->loop);
  uv_timer_start(&S->timer, ts_on_timer, ms, 0);
  return 1;
}

/*
** Resume task `t`: the only call of lua_resume in tether.  A task that
** yields without blocking (a checkpoint, or a plain coroutine.yield) goes
** back to the end of the ready queue.
*/
static void ts_step(tt_sched *S, lua_State *from, tt_task *t) {
  int nres = 0, status, nargs = 0;
  tt_op *held = t->op;      /* an op whose continuation runs now (io_op.c) */
  if (t->outcome == TT_O_NONE && t->nres > 0) { /* first resume: the args */
    nargs = t->nres;
    t->nres = 0;
  }
  t->op = NULL;
  S->current = t;
  t->state = TT_T_RUNNING;
  status = lua_resume(t->co, from, nargs, &nres);
  S->current = NULL;
  if (held) ts_op_release(held);
  if (status == LUA_YIELD) {
    if (t->state == TT_T_RUNNING) {
      lua_pop(t->co, nres);
      ts_ready(S, t);
    }
    return;
  }
  if (status != LUA_OK) { /* an error escaped the task's own handler */
    t->outcome = (uint8_t)tk_task_outcome(t->co, S, t, -1);
    nres = 1;
  }
  t->nres = nres;
  ts_task_finished(S, from, t);
}

/* Run the tasks that are ready now; those made ready meanwhile wait. */
static void ts_run_batch(tt_sched *S, lua_State *from) {
  tt_task *t = S->rhead;
  S->rhead = S->rtail = NULL;
  while (t != NULL) {
    tt_task *next = t->rnext;
    t->rnext = NULL;
    ts_step(S, from, t);
    t = next;
  }
}

/* Drop every task still alive under `s` (a run that cannot go on). */
static void ts_abandon(tt_sched *S, tt_scope *s) {
  while (s->children) {
    tt_scope *c = s->children;
    ts_abandon(S, c);
    TT_LIST_REMOVE(s->children, c, link);
  }
  while (s->tasks) {
    tt_task *t = s->tasks;
    TT_LIST_REMOVE(s->tasks, t, slink);
  }
  ts_timer_stop(S, &s->timer);
  if (s->kind == TT_SCOPE_TASK) {
    tt_task *t = s->owner;
    ts_timer_stop(S, &t->timer);
    t->state = TT_T_DONE;
    t->outcome = TT_O_CANCELLED;
    t->scope = NULL;
    t->group = NULL;
    if (t->wlist) TT_LIST_REMOVE(*t->wlist, t, wlink); /* a Lock may outlive the run */
    t->wlist = NULL;
    t->waiters = NULL;
    t->nres = 0;
    ts_task_unanchor(S->L, t);
    S->ntasks--;
  }
}

/* Protected, for l_run: the dump of the run (light userdata 1). */
static int l_dump_protected(lua_State *L) {
  tk_dump_push(L, lua_touserdata(L, 1));
  return 1;
}

/* ---- core functions --------------------------------------------------- */

/* Monotonic time in ns. */
uint64_t ts_now(void) {
  return uv_hrtime();
}

/* Put `t` at the end of the ready queue. */
void ts_ready(tt_sched *S, tt_task *t) {
  t->state = TT_T_READY;
  t->rnext = NULL;
  if (S->rtail) S->rtail->rnext = t;
  else S->rhead = t;
  S->rtail = t;
}

/*
** Wake a blocked task: take it off what it waits on and make it ready.
** `cancel` says that a cancellation woke it.  No-op unless it is blocked.
*/
void ts_wake(tt_task *t, int cancel) {
  tt_sched *S = t->S;
  if (t->state != TT_T_BLOCKED) return;
  if (t->wait == TT_W_IO) {
    /* The operation wakes the task once libuv is done with it. */
    if (cancel) ts_op_cancel(t->op);
    return;
  }
  if (t->wait == TT_W_SLEEP) {
    if (t->forever) {
      t->forever = 0;
      S->nforever--;
    } else {
      ts_timer_stop(S, &t->timer);
    }
  }
  if (t->wlist) {
    TT_LIST_REMOVE(*t->wlist, t, wlink);
    t->wlist = NULL;
  }
  t->wait = TT_W_NONE;
  t->wake_cancel = (uint8_t)cancel;
  ts_ready(S, t);
}

/* The return hook armed on the thread that resumed a task by hand: its
** coroutine.resume (the first function to return there) raises. */
static void ts_foreign_hook(lua_State *L, lua_Debug *ar) {
  tt_sched *S;
  (void)ar;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tt_sched_key);
  S = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (S == NULL || S->fh_L != L) return;
  lua_sethook(L, S->fh_hook, S->fh_mask, S->fh_count);
  S->fh_L = NULL;
  luaL_error(L, "%s", S->fh_msg);
}

/* Protected, for tk_foreign_resume: the name of task 1 (light userdata). */
static int l_task_name(lua_State *L) {
  tk_push_task_name(L, lua_touserdata(L, 1));
  return 1;
}

/*
** The coroutine of task `t` (NULL: find it) was resumed by hand, not by
** ts_step, and a continuation of tether's runs on `L`.  NOTE: the task must
** not notice: drop what the resume passed, yield again with the same
** continuation, so that the task waits exactly as before; the resumer gets
** the error from a return hook on its thread, which makes its
** coroutine.resume raise (pcall(coroutine.resume, co) returns false, msg).
** Never raises on `L`: an error here would end the task.
*/
static int tk_foreign_resume(lua_State *L, tt_sched *S, tt_task *t,
                             lua_KFunction k, lua_KContext ctx) {
  lua_State *to = S->current ? S->current->co : S->L;
  const char *name = "?";
  if (t == NULL) {                      /* the anchors hold every live task */
    int i;
    tk_push_ref(L, S->anchor_ref);
    for (i = 1; i <= S->nanchor && t == NULL; i++) {
      tt_task *x;
      lua_rawgeti(L, -1, i);
      x = lua_touserdata(L, -1);
      lua_pop(L, 1);
      if (x && x->co == L) t = x;
    }
    lua_pop(L, 1);
  }
  if (t) {
    lua_settop(L, t->ytop);
    lua_pushcfunction(L, l_task_name);
    lua_pushlightuserdata(L, t);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_isstring(L, -1))
      name = lua_tostring(L, -1);
  }
  snprintf(S->fh_msg, sizeof S->fh_msg, "coroutine.resume: the coroutine of "
           "task '%s' is run by tether and cannot be resumed by hand (the "
           "task goes on waiting in %s)", name,
           t ? ts_wait_name(t->wait) : "tether");
  if (t) lua_settop(L, t->ytop);
  if (S->fh_L == NULL) {
    S->fh_L = to;
    S->fh_hook = lua_gethook(to);
    S->fh_mask = lua_gethookmask(to);
    S->fh_count = lua_gethookcount(to);
    lua_sethook(to, ts_foreign_hook, LUA_MASKRET, 0);
  }
  return lua_yieldk(L, 0, ctx, k);
}

/* The continuation of every tk_yield: the scheduler resumed the task (the
** usual case), or someone resumed its coroutine by hand. */
static int k_resumed(lua_State *L, int status, lua_KContext ctx) {
  tt_task *t = (tt_task *)ctx;
  if (t->S->current == t) return t->yk(L, status, t->yctx);
  return tk_foreign_resume(L, t->S, t, k_resumed, ctx);
}

/*
** Yield the running task `t` to the scheduler; `k` (with `ctx`) continues
** it when the scheduler resumes it.  Every yield of tether's goes through
** here, so a resume by hand is caught before `k` runs.
*/
int tk_yield(lua_State *L, tt_task *t, lua_KFunction k, lua_KContext ctx) {
  t->yk = k;
  t->yctx = ctx;
  t->ytop = lua_gettop(L);
  return lua_yieldk(L, 0, (lua_KContext)t, k_resumed);
}

/* Block the running task `t` until woken; `k` continues it. */
int tk_block(lua_State *L, tt_task *t, int wait, lua_KFunction k) {
  t->state = TT_T_BLOCKED;
  t->wait = (uint8_t)wait;
  t->wake_cancel = 0;
  return tk_yield(L, t, k, 0);
}

/*
** The task that runs on `L`, for a blocking operation named `op`; raises a
** clear error outside tether.run, on a coroutine tether does not manage,
** or where a yield is impossible.
*/
tt_task *tk_current(lua_State *L, tt_sched *S, const char *op) {
  tt_task *t = S->current;
  if (!S->running || t == NULL)
    luaL_error(L, "%s: called outside tether.run", op);
  if (t->co != L)
    luaL_error(L, "%s: called from a coroutine that tether does not manage",
               op);
  if (!lua_isyieldable(L))
    luaL_error(L, "%s: cannot block here (in a function that a C function "
               "calls, such as tostring's __tostring, a table.sort comparator "
               "or a string.gsub callback, or in a finalizer)", op);
  return t;
}

/* Continuation of a checkpoint: raise if the task is cancelled now. */
int tk_checkpoint_k(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *t = S->current;
  tt_scope *s;
  (void)status;
  if (t == NULL || t->co != L)        /* yielded without tk_yield */
    return tk_foreign_resume(L, S, NULL, tk_checkpoint_k, ctx);
  s = ts_cancelled(t);
  if (s) return tk_raise_cancelled(L, t->S, s);
  return 0;
}

/* Continuation of a wait that a cancellation may interrupt. */
int tk_cancellable_k(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *t = S->current;
  (void)status;
  if (t == NULL || t->co != L)
    return tk_foreign_resume(L, S, NULL, tk_cancellable_k, ctx);
  if (t->wake_cancel) {
    tt_scope *s = ts_cancelled(t);
    if (s) return tk_raise_cancelled(L, t->S, s);
  }
  return 0;
}

/* Sleep the running task until `deadline` (TT_NEVER: until cancelled). */
static int tk_sleep_until(lua_State *L, tt_sched *S, tt_task *t,
                          uint64_t deadline) {
  if (deadline <= ts_now() || ts_cancelled(t))
    return tk_yield(L, t, tk_checkpoint_k, 0);
  if (deadline == TT_NEVER) {
    t->forever = 1;
    S->nforever++;
  } else if (ts_timer_start(S, &t->timer, deadline) != 0) {
    return luaL_error(L, "not enough memory");
  }
  return tk_block(L, t, TT_W_SLEEP, tk_cancellable_k);
}

/* Seconds from now to an absolute deadline in ns, for a duration `d`. */
uint64_t ts_deadline_after(double d) {
  if (d >= 1e9) return TT_NEVER; /* more than 31 years: never */
  return ts_now() + (uint64_t)ceil(d * 1e9);
}

/* ---- bindings --------------------------------------------------------- */

/* tether.sleep(seconds) */
static int l_sleep(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  double d = tk_checknum(L, 1);
  tt_task *t;
  luaL_argcheck(L, d >= 0, 1, "non-negative number expected");
  t = tk_current(L, S, "tether.sleep");
  if (d == 0) return tk_yield(L, t, tk_checkpoint_k, 0);
  return tk_sleep_until(L, S, t, ts_deadline_after(d));
}

/* tether.sleep_until(time)  -- time on the tether.now() clock */
static int l_sleep_until(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  double at = tk_checknum(L, 1);
  tt_task *t;
  t = tk_current(L, S, "tether.sleep_until");
  /* NOTE: the deadline is computed from `at` alone, so that tasks asking
     for the same time share one deadline and wake in the order they slept. */
  if (at >= 1e9) return tk_sleep_until(L, S, t, TT_NEVER);
  return tk_sleep_until(L, S, t,
                        at <= 0 ? 0 : S->t0 + (uint64_t)ceil(at * 1e9));
}

/* tether.sleep_forever() */
static int l_sleep_forever(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  return tk_sleep_until(L, S, tk_current(L, S, "tether.sleep_forever"),
                        TT_NEVER);
}

/* tether.checkpoint() */
static int l_checkpoint(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  return tk_yield(L, tk_current(L, S, "tether.checkpoint"), tk_checkpoint_k,
                  0);
}

/* tether.now() -> seconds */
static int l_now(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  lua_pushnumber(L, (double)(ts_now() - S->t0) / 1e9);
  return 1;
}

/* tether.current_task() -> Task or nil */
static int l_current_task(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  if (S->current == NULL || S->current->co != L) return 0;
  tk_push_task(L, S->current);
  return 1;
}

/* tether.stats() -> { tasks, handles, timers, io, running } */
static int l_stats(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, S->nios);
  lua_setfield(L, -2, "io");
  lua_pushinteger(L, S->ntasks);
  lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, S->nhandles);
  lua_setfield(L, -2, "handles");
  lua_pushinteger(L, S->nheap + S->nforever);
  lua_setfield(L, -2, "timers");
  lua_pushboolean(L, S->running);
  lua_setfield(L, -2, "running");
  return 1;
}

/* Close our libuv handles and let the loop finish closing them. */
static void ts_close_handles(tt_sched *S) {
  if (!uv_is_closing((uv_handle_t *)&S->timer))
    uv_close((uv_handle_t *)&S->timer, ts_on_close);
  if (!uv_is_closing((uv_handle_t *)&S->sigint))
    uv_close((uv_handle_t *)&S->sigint, ts_on_close);
  /* NOTE: ONCE, not NOWAIT: an abandoned request (a DNS lookup) may take a
     while, and the run waits for it without spinning. */
  while (S->nhandles > 0) uv_run(S->loop, UV_RUN_ONCE);
}

/* tether.run(main, ...) -> main's results */
static int l_run(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  int nargs = lua_gettop(L) - 1, deadlocked = 0, abandoned = 0;
  int dump_ref = LUA_NOREF;
  uint64_t polled = 0;
  struct sigaction old;
  tt_task *root;
  if (S->running)
    return luaL_error(L, "tether.run: already running (called from inside "
                      "a task)");
  luaL_checkany(L, 1);
  if (!lua_isfunction(L, 1) && luaL_getmetafield(L, 1, "__call") == LUA_TNIL)
    luaL_typeerror(L, 1, "function");
  lua_settop(L, nargs + 1);
  root = tk_task_new(L, S, 1, nargs);         /* stack: main, args, task */
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, TT_UV_NAME);
  S->root = root;
  S->running = 1;
  S->interrupted = 0;
  uv_timer_init(S->loop, &S->timer);
  uv_signal_init(S->loop, &S->sigint);
  S->timer.data = S->sigint.data = S;
  S->nhandles = 2;
  sigaction(SIGINT, NULL, &old);
  uv_signal_start(&S->sigint, ts_on_sigint, SIGINT);
  ts_io_run_begin(S);
  ts_ready(S, root);
  while (root->state != TT_T_DONE) {
    ts_fire_timers(S);
    if (S->rhead) {
      uint64_t now;
      ts_run_batch(S, L);
      /* NOTE: poll I/O between batches at most every 100 us: a task that
         loops on checkpoints should not pay a syscall per turn. */
      now = ts_now();
      if (now - polled >= 100000) {
        uv_run(S->loop, UV_RUN_NOWAIT);
        polled = now;
      }
      continue;
    }
    if (!ts_arm_timer(S) && S->nforever == 0 && !ts_loop_alive(S)) {
      /* Nothing is ready and nothing can make anything ready. */
      if (!deadlocked) {
        deadlocked = 1;
        /* what every task waits on, before the cancellation unwinds them */
        lua_pushcfunction(L, l_dump_protected);
        lua_pushlightuserdata(L, S);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK)
          dump_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        else
          lua_pop(L, 1);
        ts_cancel(S, &root->root, TT_REASON_DEADLOCK);
        continue;
      }
      ts_abandon(S, &root->root);
      abandoned = 1;
      break;
    }
    uv_run(S->loop, UV_RUN_ONCE);
    polled = ts_now();
  }
  uv_signal_stop(&S->sigint);
  ts_io_run_end(S);
  ts_close_handles(S);
  sigaction(SIGINT, &old, NULL);
  S->running = 0;
  S->root = NULL;
  S->rhead = S->rtail = NULL;
  if (S->interrupted) {
    tk_new_error(L, S, TT_CLS_INTERRUPTED, "tether.run: interrupted by SIGINT");
    if (root->outcome == TT_O_FAILED) {
      lua_pushvalue(root->co, -1);
      lua_xmove(root->co, L, 1);
      lua_setfield(L, -2, "error");
    }
    return lua_error(L);
  }
  if (deadlocked && (abandoned || root->outcome == TT_O_CANCELLED)) {
    tk_push_ref(L, dump_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, dump_ref);
    lua_pushfstring(L, "tether.run: deadlock: every task is blocked and "
                    "nothing can wake them%s%s",
                    lua_isstring(L, -1) ? ":\n" : "",
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    tk_new_error(L, S, TT_CLS_ERROR, lua_tostring(L, -1));
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "dump");
    return lua_error(L);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, dump_ref);
  lua_checkstack(L, root->nres + LUA_MINSTACK);
  if (root->outcome != TT_O_OK) {
    lua_xmove(root->co, L, 1);
    return lua_error(L);
  }
  lua_xmove(root->co, L, root->nres);
  return root->nres;
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg sched_funcs[] = {
  {"run", l_run},
  {"sleep", l_sleep},
  {"sleep_until", l_sleep_until},
  {"sleep_forever", l_sleep_forever},
  {"checkpoint", l_checkpoint},
  {"now", l_now},
  {"current_task", l_current_task},
  {"stats", l_stats},
  {NULL, NULL}
};

/* Register the scheduler's functions into the table on top of the stack. */
void tt_sched_open(lua_State *L, tt_sched *S) {
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, sched_funcs, 1);
}
