/* sched.c - the scheduler: ready queue, the one resume site, the run loop on libuv handles, tether.run, sleep and checkpoints */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

const char tt_sched_key = 0;

/*
** The handles a session keeps on its loop.  They are malloc'd, not part of
** the scheduler, because a session may end inside one of their callbacks
** and the next one begin before libuv has finished closing them; the last
** close callback frees the block.  Their `data` stays NULL: luv's loop
** finalizer closes what is left with a callback that reads `data` as its
** own.
*/
struct tt_loopres {
  uv_prepare_t prepare;   /* before each poll: may it block? (ts_plan) */
  uv_check_t check;       /* after each poll: run the ready tasks (ts_drive) */
  uv_idle_t idle;         /* active while tasks are ready: the poll won't block */
  uv_timer_t timer;       /* bounds the poll by the earliest deadline */
  tt_sched *S;
  int nopen;
};

#define LR_OF(h, f) ((tt_loopres *)((char *)(h) - offsetof(tt_loopres, f)))
#define S_OF_SIGINT(h) ((tt_sched *)((char *)(h) - offsetof(tt_sched, sigint)))

/* ---- static helpers --------------------------------------------------- */

static void ts_lr_closed(uv_handle_t *h) {
  tt_loopres *lr;
  switch (h->type) {
    case UV_PREPARE: lr = LR_OF(h, prepare); break;
    case UV_CHECK: lr = LR_OF(h, check); break;
    case UV_IDLE: lr = LR_OF(h, idle); break;
    default: lr = LR_OF(h, timer); break;
  }
  lr->S->nhandles--;
  if (--lr->nopen == 0) free(lr);
}

static void ts_sigint_closed(uv_handle_t *h) {
  tt_sched *S = S_OF_SIGINT(h);
  S->nhandles--;
  S->sigint_open = 0;
}

static void ts_on_sigint(uv_signal_t *h, int signum) {
  tt_sched *S = S_OF_SIGINT(h);
  (void)signum;
  /* An open SIGINT receiver replaces the Ctrl-C handling (io_signal.c). */
  if (ts_signal_receivers(SIGINT) > 0) return;
  /* A second SIGINT must end the process at once, whatever the loop does,
     after a SIGKILL to every child (io_process.c). */
  uv_signal_stop(h);
  ts_process_arm_second_sigint();
  S->interrupted = 1;
  if (S->root && S->root->state != TT_T_DONE)
    ts_cancel(S, &S->root->root, TT_REASON_INTERRUPT);
}

/* Both exist for their effect on the poll: the idle handle makes it not
** block, the timer bounds it.  Deadlines are fired by ts_plan and ts_drive. */
static void ts_on_idle(uv_idle_t *h) {
  (void)h;
}

static void ts_on_timer(uv_timer_t *h) {
  (void)h;
}

static void ts_idle(tt_sched *S, int on) {
  if (S->lr == NULL) return;
  if (on) uv_idle_start(&S->lr->idle, ts_on_idle);
  else uv_idle_stop(&S->lr->idle);
}

/* Could anything but our own handles wake the loop? */
static int ts_loop_alive(tt_sched *S) {
  tt_loopres *lr = S->lr;
  int alive;
  uv_unref((uv_handle_t *)&lr->prepare);
  uv_unref((uv_handle_t *)&lr->check);
  if (S->sigint_open) uv_unref((uv_handle_t *)&S->sigint);
  alive = uv_loop_alive(S->loop);
  uv_ref((uv_handle_t *)&lr->prepare);
  uv_ref((uv_handle_t *)&lr->check);
  if (S->sigint_open) uv_ref((uv_handle_t *)&S->sigint);
  return alive;
}

/* Fire every due timer entry: wake sleepers, cancel scopes past deadline. */
static void ts_fire_timers(tt_sched *S) {
  tt_timer *tm;
  uint64_t now;
  if (S->nheap == 0) return;
  now = ts_now(S);
  while ((tm = ts_timer_pop_due(S, now)) != NULL) {
    if (tm->kind == TT_TIMER_SLEEP)
      ts_wake((tt_task *)((char *)tm - offsetof(tt_task, timer)), 0);
    else
      ts_cancel(S, (tt_scope *)((char *)tm - offsetof(tt_scope, timer)),
                TT_REASON_DEADLINE);
  }
}

/* Arm the libuv timer for the earliest entry (real clock). */
static void ts_arm_timer(tt_sched *S) {
  uint64_t next = ts_timer_next(S), now, ms;
  if (next == TT_NEVER) {
    uv_timer_stop(&S->lr->timer);
    return;
  }
  now = ts_now(S);
  ms = next > now ? (next - now + 999999) / 1000000 : 0;
  uv_update_time(S->loop);
  uv_timer_start(&S->lr->timer, ts_on_timer, ms, 0);
}

static void ts_root_finish(tt_sched *S, lua_State *L, tt_task *t);

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
  if (t->rootkind) ts_root_finish(S, from, t);
  else ts_task_finished(S, from, t);
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
    if (t->forever) {
      t->forever = 0;
      S->nforever--;
    }
    if (t->op) {                  /* its operation completes to no one */
      tt_op *op = t->op;
      if (op->task == t) {        /* still pending */
        if (op->holds_clock) S->nholds--;
        op->task = NULL;
      }
      t->op = NULL;
      ts_op_release(op);          /* the task's hold on the object */
    }
    if (t->wlist) TT_LIST_REMOVE(*t->wlist, t, wlink); /* a Lock may outlive the run */
    t->state = TT_T_DONE;
    t->outcome = TT_O_CANCELLED;
    t->scope = NULL;
    t->group = NULL;
    t->wlist = NULL;
    t->waiters = NULL;
    t->nres = 0;
    ts_task_unanchor(S->L, t);
    S->ntasks--;
  }
}

/* ---- sessions and roots ----------------------------------------------- */

/* Protected: keep the dump of the session (light userdata 1) in
** S->dump_ref, for the deadlock errors. */
static int l_dump_protected(lua_State *L) {
  tt_sched *S = lua_touserdata(L, 1);
  tk_dump_push(L, S);
  luaL_unref(L, LUA_REGISTRYINDEX, S->dump_ref);
  S->dump_ref = LUA_NOREF;
  S->dump_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* The last root is done: close what is still open, and our handles (libuv
** finishes closing them in this or the next iteration of its loop). */
static void ts_session_end(tt_sched *S) {
  tt_loopres *lr = S->lr;
  ts_io_run_end(S);
  S->lr = NULL;
  S->running = 0;
  S->vclock = S->vjump = 0;
  S->nholds = 0;
  uv_close((uv_handle_t *)&lr->prepare, ts_lr_closed);
  uv_close((uv_handle_t *)&lr->check, ts_lr_closed);
  uv_close((uv_handle_t *)&lr->idle, ts_lr_closed);
  uv_close((uv_handle_t *)&lr->timer, ts_lr_closed);
}

/*
** Root `t` is done: take it off the live roots, close the I/O objects its
** tasks left open (the session's end closes the rest), and, when `report`,
** see that a launched root's failure reaches someone.  `hidx`: its handle on
** `L`, or 0.
*/
static void ts_root_end(tt_sched *S, lua_State *L, tt_task *t, int hidx,
                        int report) {
  TT_LIST_REMOVE(S->roots, t, glink);
  S->nroots--;
  if (S->nroots > 0) ts_io_close_root(S, t);
  if (report && t->rootkind == TT_ROOT_LAUNCH) ts_launch_done(S, L, t, hidx);
}

/* A root's coroutine ended: finish it as any task, then as a root.  Its
** handle stays on `L` meanwhile (the anchor goes), for the report. */
static void ts_root_finish(tt_sched *S, lua_State *L, tt_task *t) {
  int hidx = 0;
  if (lua_checkstack(L, 2)) {
    tk_push_task(L, t);
    hidx = lua_gettop(L);
  }
  ts_task_finished(S, L, t);
  ts_root_end(S, L, t, hidx, 1);
  if (hidx) lua_settop(L, hidx - 1);
}

/* Abandon root `t` and everything under it; `why`: 2 for a deadlock, 0
** when the Lua state closes (nothing is reported then). */
static void ts_root_abandon(tt_sched *S, lua_State *L, tt_task *t, int why) {
  int hidx = 0;
  if (lua_checkstack(L, 2)) {
    tk_push_task(L, t);
    hidx = lua_gettop(L);
  }
  if (why) t->deadlocked = (uint8_t)why;
  ts_abandon(S, &t->root);
  ts_root_end(S, L, t, hidx, why != 0);
  if (hidx) lua_settop(L, hidx - 1);
}

/*
** Nothing is ready and nothing can make anything ready.  A root that meets
** this for the first time is cancelled, so that its cleanup runs; when only
** such roots are left and they are stuck again, they are abandoned.
*/
static void ts_deadlock(tt_sched *S) {
  tt_task *r = S->roots;
  int fresh = 0;
  if (r == NULL) return;
  do {                            /* what every task waits on, first */
    if (!r->deadlocked) {
      lua_pushcfunction(S->from, l_dump_protected);
      lua_pushlightuserdata(S->from, S);
      if (lua_pcall(S->from, 1, 0, 0) != LUA_OK) lua_pop(S->from, 1);
      break;
    }
    r = r->glink.next;
  } while (r != S->roots);
  r = S->roots;
  do {
    if (!r->deadlocked) {
      r->deadlocked = 1;
      ts_cancel(S, &r->root, TT_REASON_DEADLOCK);
      fresh = 1;
    }
    r = r->glink.next;
  } while (r != S->roots);
  if (!fresh)
    while (S->roots) ts_root_abandon(S, S->from, S->roots, 2);
  ts_idle(S, 1);                  /* poll without blocking, then look again */
  if (S->nroots == 0) ts_session_end(S);
}

/*
** Before the loop polls (the prepare callback): fire what came due, then
** decide how the poll may block.  Not at all while tasks are ready, nor on
** the virtual clock when time is free to jump (the poll before a jump);
** otherwise until the earliest deadline (real clock) or until I/O.
*/
static void ts_plan(tt_sched *S) {
  ts_fire_timers(S);
  if (S->rhead) {
    ts_idle(S, 1);
    return;
  }
  if (!S->vclock) {
    ts_arm_timer(S);
  } else if (S->nholds == 0 && S->nheap > 0) {
    S->vjump = 1;
    ts_idle(S, 1);
    return;
  }
  ts_idle(S, 0);
  /* NOTE: a task sleeping forever, or waiting in tether.await, may be
     woken by what tether cannot see (SIGINT, a host's own events). */
  if (S->nheap == 0 && S->nforever == 0 && S->nholds == 0 &&
      !ts_loop_alive(S))
    ts_deadlock(S);
}

/*
** After the poll (the check callback): make the virtual clock's jump if
** this was the poll before one, then run ready tasks batch after batch;
** only one batch when `once`.  NOTE: at most for 100 us before libuv polls
** again: a task that loops on checkpoints should not pay a syscall per
** turn, and I/O still gets polled between batches.
*/
static void ts_drive(tt_sched *S, int once) {
  uint64_t start;
  if (S->vjump) {
    S->vjump = 0;
    if (S->rhead == NULL && S->nholds == 0 && S->nheap > 0) {
      uint64_t next = ts_timer_next(S);
      if (next > S->vnow) S->vnow = next;
    }
  }
  ts_fire_timers(S);
  if (S->rhead == NULL) return;
  S->driving = 1;
  start = uv_hrtime();
  do {
    ts_run_batch(S, S->from);
    ts_fire_timers(S);
  } while (!once && S->rhead && uv_hrtime() - start < 100000);
  S->driving = 0;
  ts_idle(S, S->rhead != NULL);
  if (S->nroots == 0 && S->running) ts_session_end(S);
}

/* NOTE: a task or a handler that runs the loop itself (luv's uv.run inside
   a task) gets no scheduling from it: never a resume inside a resume. */
static void ts_on_prepare(uv_prepare_t *h) {
  tt_sched *S = LR_OF(h, prepare)->S;
  if (S->current || S->driving) return;
  S->driving = 1;                 /* a deadlock report runs a handler */
  ts_plan(S);
  S->driving = 0;
}

static void ts_on_check(uv_check_t *h) {
  tt_sched *S = LR_OF(h, check)->S;
  if (S->current == NULL && !S->driving) ts_drive(S, 0);
}

/* Begin a session on `loop`: our handles, SIGPIPE ignored.  Returns -1
** when memory ran out (nothing changed then). */
static int ts_session_begin(tt_sched *S, uv_loop_t *loop, int vclock) {
  tt_loopres *lr = calloc(1, sizeof *lr);
  if (lr == NULL) return -1;
  lr->S = S;
  uv_prepare_init(loop, &lr->prepare);
  uv_check_init(loop, &lr->check);
  uv_idle_init(loop, &lr->idle);
  uv_timer_init(loop, &lr->timer);
  lr->nopen = 4;
  S->nhandles += 4;
  uv_prepare_start(&lr->prepare, ts_on_prepare);
  uv_check_start(&lr->check, ts_on_check);
  S->lr = lr;
  S->loop = loop;
  S->running = 1;
  S->vclock = (uint8_t)vclock;
  S->vjump = 0;
  S->vnow = S->t0;                /* tether.now() is 0 */
  ts_io_run_begin(S);
  return 0;
}

/* ---- core functions --------------------------------------------------- */

/* The scheduler's clock in ns: monotonic, or the virtual time. */
uint64_t ts_now(tt_sched *S) {
  return S->vclock ? S->vnow : uv_hrtime();
}

/* Something the virtual clock must wait for begins (+1) or ends (-1): an
** operation that is not a tt_op (a child process that runs). */
void ts_clock_hold(tt_sched *S, int delta) {
  S->nholds += delta;
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
** clear error outside a task, on a coroutine tether does not manage, or
** where a yield is impossible.
*/
tt_task *tk_current(lua_State *L, tt_sched *S, const char *op) {
  tt_task *t = S->current;
  if (t == NULL)
    luaL_error(L, "%s: called outside tether.run (or a task of "
               "tether.launch)", op);
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
  if (deadline <= ts_now(S) || ts_cancelled(t))
    return tk_yield(L, t, tk_checkpoint_k, 0);
  if (deadline == TT_NEVER) {
    t->forever = 1;
    S->nforever++;
  } else if (ts_timer_start(S, &t->timer, deadline) != 0) {
    return luaL_error(L, "not enough memory");
  }
  return tk_block(L, t, TT_W_SLEEP, tk_cancellable_k);
}

/* The deadline, in ns on the scheduler's clock, `d` seconds from now. */
uint64_t ts_deadline_after(tt_sched *S, double d) {
  if (d >= 1e9) return TT_NEVER; /* more than 31 years: never */
  return ts_now(S) + (uint64_t)ceil(d * 1e9);
}

static const char *const root_opts[] = {"clock", "name", NULL};

/*
** The arguments of tether.run and tether.launch, `[opts,] main, ...`: a
** table that cannot be called, first, holds the options.  Returns the
** index of main; sets *clock (TT_CLOCK_*) and *nameidx (the index of the
** options when they give a name, else 0).
*/
int tk_root_args(lua_State *L, const char *fname, int *clock, int *nameidx) {
  int f = 1;
  *clock = TT_CLOCK_ANY;
  *nameidx = 0;
  if (lua_type(L, 1) == LUA_TTABLE && !tk_is_callable(L, 1)) {
    const char *c;
    tk_check_opts(L, 1, fname, root_opts);
    c = tk_opt_str(L, 1, "clock", fname);
    if (c && strcmp(c, "virtual") == 0) *clock = TT_CLOCK_VIRTUAL;
    else if (c && strcmp(c, "real") == 0) *clock = TT_CLOCK_REAL;
    else if (c)
      tk_argerror(L, 1, fname, "option 'clock': \"real\" or \"virtual\" "
                  "expected");
    if (tk_opt_str(L, 1, "name", fname)) *nameidx = 1;
    f = 2;
  }
  luaL_checkany(L, f);
  if (!tk_is_callable(L, f)) luaL_typeerror(L, f, "function");
  return f;
}

/*
** Start the function at `fidx`, with the values above it as arguments, as
** a root of kind `kind` (TT_ROOT_RUN or TT_ROOT_LAUNCH), and push its
** handle.  It joins the session, or begins one on the loop picked now
** (tk_pick_loop).  The root runs on a later tick.
*/
tt_task *tk_root_start(lua_State *L, tt_sched *S, int fidx, int nameidx,
                       int kind, int clock, const char *fname) {
  int busy = 0, nargs = lua_gettop(L) - fidx;
  uv_loop_t *loop = tk_pick_loop(L, S, fname, &busy);
  tt_task *t;
  if (kind == TT_ROOT_RUN && (busy || S->driving))
    luaL_error(L, "%s: the loop is already running (inside uv.run()): use "
               "tether.launch there", fname);
  if (S->running && loop != S->loop)
    luaL_error(L, "%s: tether already runs on another loop (it picks the "
               "host's, else luv's, else the default loop when a first "
               "root starts)", fname);
  if (S->running && clock == TT_CLOCK_VIRTUAL && !S->vclock)
    luaL_error(L, "%s: clock = \"virtual\" while roots on the real clock "
               "are live", fname);
  if (S->running && clock == TT_CLOCK_REAL && S->vclock)
    luaL_error(L, "%s: clock = \"real\" while roots on the virtual clock "
               "are live", fname);
  t = tk_task_new(L, S, fidx, nargs);
  if (nameidx) {
    lua_getfield(L, nameidx, "name");
    lua_tostring(L, -1);
  } else {
    lua_pushvalue(L, fidx);
  }
  lua_setiuservalue(L, -2, TT_UV_NAME);
  if (!S->running && ts_session_begin(S, loop, clock == TT_CLOCK_VIRTUAL)) {
    ts_abandon(S, &t->root);
    luaL_error(L, "not enough memory");
  }
  t->rootkind = (uint8_t)kind;
  TT_LIST_APPEND(S->roots, t, glink);
  S->nroots++;
  ts_ready(S, t);
  return t;
}

/*
** tether_ready_run: run the tasks that are ready now, once, outside the
** loop's callbacks.  Returns 1 when tasks are ready after it, 0 when none,
** UV_EBUSY from inside a task or a handler that tether runs.
*/
int ts_ready_run(tt_sched *S) {
  if (S->current || S->driving) return UV_EBUSY;
  if (!S->running) return 0;
  ts_drive(S, 1);
  return S->rhead != NULL;
}

/*
** The Lua state closes (the scheduler's or luv's guard's __gc): abandon the
** live roots (nothing is resumed any more), close everything they opened
** and our handles, and let the loop finish closing them: the memory that
** libuv still uses goes with the state.
*/
void ts_shutdown(tt_sched *S) {
  while (S->roots) ts_root_abandon(S, S->L, S->roots, 0);
  S->rhead = S->rtail = NULL;
  if (S->running) ts_session_end(S);
  while (S->nhandles > 0 && uv_run(S->loop, UV_RUN_ONCE)) {}
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
  return tk_sleep_until(L, S, t, ts_deadline_after(S, d));
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

/* tether.now() -> seconds (the virtual time on the virtual clock) */
static int l_now(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  lua_pushnumber(L, (double)(ts_now(S) - S->t0) / 1e9);
  return 1;
}

/* tether.current_task() -> Task or nil */
static int l_current_task(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  if (S->current == NULL || S->current->co != L) return 0;
  tk_push_task(L, S->current);
  return 1;
}

/* tether.stats() -> { tasks, handles, timers, io, roots, running } */
static int l_stats(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, S->nios);
  lua_setfield(L, -2, "io");
  lua_pushinteger(L, S->ntasks);
  lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, S->nhandles);
  lua_setfield(L, -2, "handles");
  lua_pushinteger(L, S->nheap + S->nforever);
  lua_setfield(L, -2, "timers");
  lua_pushinteger(L, S->nroots);
  lua_setfield(L, -2, "roots");
  lua_pushboolean(L, S->running);
  lua_setfield(L, -2, "running");
  return 1;
}

/* tether.run([opts,] main, ...) -> main's results */
static int l_run(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  int fidx, clock, nameidx;
  lua_State *from = S->from;
  struct sigaction old;
  tt_task *root;
  if (S->in_run || S->current)
    return luaL_error(L, "tether.run: already running (called from inside "
                      "a task)");
  fidx = tk_root_args(L, "tether.run", &clock, &nameidx);
  root = tk_root_start(L, S, fidx, nameidx, TT_ROOT_RUN, clock, "tether.run");
  S->root = root;
  S->in_run = 1;
  S->interrupted = 0;
  S->from = L;
  uv_signal_init(S->loop, &S->sigint);
  S->sigint_open = 1;
  S->nhandles++;
  sigaction(SIGINT, NULL, &old);
  uv_signal_start(&S->sigint, ts_on_sigint, SIGINT);
  while (root->state != TT_T_DONE) uv_run(S->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&S->sigint, ts_sigint_closed);
  /* NOTE: ONCE, not NOWAIT: an abandoned request (a DNS lookup) may take a
     while, and the run waits for it without spinning.  With launched roots
     still live, the session goes on: only our SIGINT watcher is waited for. */
  while (S->sigint_open || (!S->running && S->nhandles > 0))
    uv_run(S->loop, UV_RUN_ONCE);
  sigaction(SIGINT, &old, NULL);
  S->in_run = 0;
  S->root = NULL;
  S->from = from;
  if (S->interrupted) {
    tk_new_error(L, S, TT_CLS_INTERRUPTED, "tether.run: interrupted by SIGINT");
    if (root->outcome == TT_O_FAILED) {
      lua_pushvalue(root->co, -1);
      lua_xmove(root->co, L, 1);
      lua_setfield(L, -2, "error");
    }
    return lua_error(L);
  }
  if (root->deadlocked == 2 ||
      (root->deadlocked && root->outcome == TT_O_CANCELLED)) {
    tk_push_ref(L, S->dump_ref);
    lua_pushfstring(L, "tether.run: deadlock: every task is blocked and "
                    "nothing can wake them%s%s",
                    lua_isstring(L, -1) ? ":\n" : "",
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    tk_new_error(L, S, TT_CLS_ERROR, lua_tostring(L, -1));
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "dump");
    return lua_error(L);
  }
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
