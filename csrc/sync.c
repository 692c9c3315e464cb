/* sync.c - Event, Lock, Semaphore, CapacityLimiter and Condition, on the scheduler's block/wake path */
#include <math.h>
#include <string.h>

#include "sync.h"

/*
** Every wait here is a task on a tt_waitq (sync.h), blocked with
** tk_block(TT_W_SYNC) and woken by ts_wake: nothing is allocated per wait.
** What a waiter waits for is handed to it before it is woken (the lock's
** ownership, a semaphore unit, a limiter token, an Event that was set):
** t->granted says so.  NOTE: a task that was handed what it waited for and
** is cancelled before it runs keeps it and returns normally; the Cancelled
** comes at its next checkpoint (as a sleep that ended in the same tick as a
** cancellation).  Nothing handed over is ever dropped.
**
** Every function of a type has three upvalues: the scheduler, the type's
** metatable (for the self check) and one more value (the Semaphore's guard
** metatable, the Lock metatable for Condition), or nil.
*/

#define UP_MT lua_upvalueindex(2)
#define UP_EXTRA lua_upvalueindex(3)
#define UP_METHODS lua_upvalueindex(4)  /* of an __index function */

typedef struct l_event {
  tt_waitq q;
  uint8_t set;
} l_event;

typedef struct l_lock {
  tt_waitq q;
  unsigned owner;           /* id of the holding task; 0 when free */
} l_lock;

typedef struct l_sem {
  tt_waitq q;
  lua_Integer value;
  lua_Integer max;          /* max_value; LUA_MAXINTEGER when none */
} l_sem;

/* What sem:acquire returns: releases the unit it holds, once. */
typedef struct l_semguard {
  l_sem *sem;
  uint8_t held;
} l_semguard;

typedef struct l_lim {
  tt_waitq q;
  lua_Number total;         /* an integer >= 1, or math.huge */
  lua_Integer borrowed;
} l_lim;

typedef struct l_cond {
  tt_waitq q;
  l_lock *lock;
} l_cond;

/* User values: 1 the name (all), 2 the borrowers table (a limiter: task id
** -> true) or the Lock (a Condition's cond.lock), or the semaphore (a guard). */
enum { UV_NAME = 1, UV_AUX = 2 };

static const char *const name_keys[] = {"name", NULL};
static const char *const sem_keys[] = {"name", "max_value", NULL};

/* ---- the waiting queue ------------------------------------------------ */

void ts_waitq_init(tt_waitq *q, int kind, int op) {
  q->head = NULL;
  q->name = NULL;
  q->kind = (uint8_t)kind;
  q->op = (uint8_t)op;
}

/* Put the running task `t` at the end of `q` (it blocks right after). */
void ts_waitq_push(tt_waitq *q, tt_task *t) {
  TT_LIST_APPEND(q->head, t, wlink);
  t->wlist = &q->head;
  t->granted = 0;
}

/* Hand what the first waiter of `q` waits for to it, and wake it. */
tt_task *ts_waitq_grant(tt_waitq *q) {
  tt_task *t = q->head;
  if (t == NULL) return NULL;
  t->granted = 1;
  ts_wake(t, 0);
  return t;
}

/* Wake every waiter of `q` (FIFO), handing each what it waits for or not. */
void ts_waitq_wake_all(tt_waitq *q, int granted) {
  while (q->head) {
    tt_task *t = q->head;
    t->granted = (uint8_t)granted;
    ts_wake(t, 0);
  }
}

int ts_waitq_count(const tt_waitq *q) {
  int n = 0;
  tt_task *t = q->head;
  if (t == NULL) return 0;
  do {
    n++;
    t = t->wlink.next;
  } while (t != q->head);
  return n;
}

/* ---- helpers for every primitive -------------------------------------- */

/* The running task for a non-blocking operation that needs one. */
tt_task *tk_sync_owner(lua_State *L, tt_sched *S, const char *op) {
  tt_task *t = S->current;
  if (!S->running || t == NULL || t->co != L)
    luaL_error(L, "%s: must be called from a tether task", op);
  return t;
}

/*
** The operation is done and its `nres` results are on top of the stack:
** yield once, so that other tasks run (a checkpoint), and return them.
** The continuation never raises: what was done is not undone, and a
** cancellation that came meanwhile is raised at the next checkpoint.
*/
int tk_sync_done(lua_State *L, int nres) {
  return tk_yield_results(L, nres);
}

/* Raise Cancelled if `t` is cancelled now; else return 0. */
int tk_sync_cancelled(lua_State *L, tt_task *t) {
  tt_scope *s = ts_cancelled(t);
  if (s) return tk_raise_cancelled(L, t->S, s);
  return 0;
}

/* The object at argument 1, of the type whose metatable is upvalue 2. */
void *tk_sync_self(lua_State *L, const char *what, const char *tname) {
  void *p = lua_touserdata(L, 1);
  if (p != NULL && lua_getmetatable(L, 1)) {
    int same = lua_rawequal(L, -1, UP_MT);
    lua_pop(L, 1);
    if (same) return p;
  }
  luaL_error(L, "bad self for '%s' (%s expected, got %s); call it as a "
             "method", what, tname, luaL_typename(L, 1));
  return NULL;
}

/* Check the options table at `opts` and return its name, or NULL. */
const char *tk_sync_name(lua_State *L, int opts, const char *fname,
                         const char *const keys[]) {
  if (!tk_check_opts(L, opts, fname, keys)) return NULL;
  return tk_opt_str(L, opts, "name", fname);
}

/* Push a tether.WouldBlock for operation `op`. */
void tk_push_wouldblock(lua_State *L, tt_sched *S, const char *op) {
  lua_pushfstring(L, "%s: the operation would block", op);
  tk_new_error(L, S, TT_CLS_WOULD_BLOCK, lua_tostring(L, -1));
  lua_remove(L, -2);
}

/* Store the name (or nil) as user value UV_NAME of the userdata on top, and
** point the queue at it. */
static void set_name(lua_State *L, tt_waitq *q, const char *name) {
  if (name) {
    lua_pushstring(L, name);
    q->name = lua_tostring(L, -1);
    lua_setiuservalue(L, -2, UV_NAME);
  }
}

/* Push "kind 'name'" or "kind" for `q`, as dump and tostring show it. */
static void push_what(lua_State *L, const tt_waitq *q) {
  static const char *const kinds[] = {
    "event", "lock", "semaphore", "capacity limiter", "condition", "channel"
  };
  if (q->name) lua_pushfstring(L, "%s '%s'", kinds[q->kind], q->name);
  else lua_pushstring(L, kinds[q->kind]);
}

static int l_sync_tostring(lua_State *L) {
  tt_waitq *q = lua_touserdata(L, 1);
  lua_getfield(L, UP_MT, "__name");
  push_what(L, q);
  lua_pushfstring(L, "%s (%s)", lua_tostring(L, -2), lua_tostring(L, -1));
  return 1;
}

/* Number argument `arg` as an integer in [min, max], or raise. */
static lua_Integer check_int(lua_State *L, int arg, const char *fname,
                             lua_Integer min) {
  lua_Integer n;
  int isint;
  if (lua_type(L, arg) != LUA_TNUMBER) {
    lua_pushfstring(L, "integer expected, got %s", luaL_typename(L, arg));
    tk_argerror(L, arg, fname, lua_tostring(L, -1));
  }
  n = lua_tointegerx(L, arg, &isint);
  if (!isint) tk_argerror(L, arg, fname, "integer expected, got a fraction");
  if (n < min) {
    lua_pushfstring(L, "must be at least %I", (LUAI_UACINT)min);
    tk_argerror(L, arg, fname, lua_tostring(L, -1));
  }
  return n;
}

/* ---- Event ------------------------------------------------------------- */

#define check_event(L, w) ((l_event *)tk_sync_self(L, w, "tether.Event"))

/* tether.Event([opts]) -> Event */
static int l_event_new(lua_State *L) {
  const char *name = tk_sync_name(L, 1, "tether.Event", name_keys);
  l_event *ev = lua_newuserdatauv(L, sizeof *ev, 1);
  ts_waitq_init(&ev->q, TT_SYNC_EVENT, TT_OP_WAIT);
  ev->set = 0;
  lua_pushvalue(L, UP_MT);
  lua_setmetatable(L, -2);
  set_name(L, &ev->q, name);
  return 1;
}

/* ev:set()  -- wakes every waiter; the Event stays set */
static int l_event_set(lua_State *L) {
  l_event *ev = check_event(L, "ev:set");
  if (!ev->set) {
    ev->set = 1;
    ts_waitq_wake_all(&ev->q, 1);
  }
  return 0;
}

/* ev:is_set() -> boolean */
static int l_event_is_set(lua_State *L) {
  lua_pushboolean(L, check_event(L, "ev:is_set")->set);
  return 1;
}

static int k_event_wait(lua_State *L, int status, lua_KContext ctx) {
  tt_task *t = TT_UPSCHED(L)->current;
  l_event *ev = lua_touserdata(L, 1);
  (void)status; (void)ctx;
  if (t->granted) {
    t->granted = 0;
    return 0;
  }
  tk_sync_cancelled(L, t);
  if (ev->set) return 0;
  ts_waitq_push(&ev->q, t);
  return tk_block(L, t, TT_W_SYNC, k_event_wait);
}

/* ev:wait()  -- a checkpoint; returns once the Event is set */
static int l_event_wait(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_event *ev = check_event(L, "ev:wait");
  tt_task *t = tk_current(L, S, "ev:wait");
  lua_settop(L, 1);
  tk_sync_cancelled(L, t);
  if (ev->set) return tk_sync_done(L, 0);
  ts_waitq_push(&ev->q, t);
  return tk_block(L, t, TT_W_SYNC, k_event_wait);
}

/* ---- Lock -------------------------------------------------------------- */

#define check_lock(L, w) ((l_lock *)tk_sync_self(L, w, "tether.Lock"))

static l_lock *new_lock(lua_State *L, int mtidx, const char *name) {
  l_lock *lk = lua_newuserdatauv(L, sizeof *lk, 1);
  ts_waitq_init(&lk->q, TT_SYNC_LOCK, TT_OP_ACQUIRE);
  lk->owner = 0;
  lua_pushvalue(L, mtidx);
  lua_setmetatable(L, -2);
  set_name(L, &lk->q, name);
  return lk;
}

/* Release `lk`: its first waiter, if any, owns it now. */
static void ts_lock_release(l_lock *lk) {
  tt_task *w = lk->q.head;
  if (w) {
    lk->owner = w->id;
    ts_waitq_grant(&lk->q);
  } else {
    lk->owner = 0;
  }
}

/* tether.Lock([opts]) -> Lock */
static int l_lock_new(lua_State *L) {
  new_lock(L, UP_MT, tk_sync_name(L, 1, "tether.Lock", name_keys));
  return 1;
}

static int lock_acquire(lua_State *L, l_lock *lk, tt_task *t, int fast);

static int k_lock_wait(lua_State *L, int status, lua_KContext ctx) {
  tt_task *t = TT_UPSCHED(L)->current;
  (void)status; (void)ctx;
  lua_settop(L, 1);
  if (t->granted) {        /* the releaser made us the owner */
    t->granted = 0;
    return 1;
  }
  tk_sync_cancelled(L, t);
  return lock_acquire(L, lua_touserdata(L, 1), t, 0);
}

static int lock_acquire(lua_State *L, l_lock *lk, tt_task *t, int fast) {
  if (lk->owner == 0) {
    lk->owner = t->id;
    return fast ? tk_sync_done(L, 1) : 1;
  }
  ts_waitq_push(&lk->q, t);
  return tk_block(L, t, TT_W_SYNC, k_lock_wait);
}

/* lk:acquire() -> lk  -- a checkpoint; `lk` is also the guard for <close> */
static int l_lock_acquire(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_lock *lk = check_lock(L, "lk:acquire");
  tt_task *t = tk_current(L, S, "lk:acquire");
  if (lk->owner == t->id)
    return luaL_error(L, "lk:acquire: the lock is already held by this task");
  lua_settop(L, 1);
  tk_sync_cancelled(L, t);
  return lock_acquire(L, lk, t, 1);
}

/* lk:acquire_nowait() -> lk  -- raises tether.WouldBlock when held */
static int l_lock_acquire_nowait(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_lock *lk = check_lock(L, "lk:acquire_nowait");
  tt_task *t = tk_sync_owner(L, S, "lk:acquire_nowait");
  if (lk->owner == t->id)
    return luaL_error(L, "lk:acquire_nowait: the lock is already held by "
                      "this task");
  if (lk->owner != 0) {
    tk_push_wouldblock(L, S, "lk:acquire_nowait");
    return lua_error(L);
  }
  lk->owner = t->id;
  lua_settop(L, 1);
  return 1;
}

/* lk:release()  -- only by the task that holds it */
static int l_lock_release(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_lock *lk = check_lock(L, "lk:release");
  tt_task *t = S->current && S->current->co == L ? S->current : NULL;
  if (lk->owner == 0)
    return luaL_error(L, "lk:release: the lock is not held");
  if (t == NULL || lk->owner != t->id)
    return luaL_error(L, "lk:release: the lock is held by another task");
  ts_lock_release(lk);
  return 0;
}

/* __close: release the lock if the closing task still holds it. */
static int l_lock_close(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_lock *lk = check_lock(L, "lk:__close");
  tt_task *t = S->current;
  if (t && t->co == L && lk->owner == t->id) ts_lock_release(lk);
  return 0;
}

/* lk:locked() -> boolean */
static int l_lock_locked(lua_State *L) {
  lua_pushboolean(L, check_lock(L, "lk:locked")->owner != 0);
  return 1;
}

/* ---- Semaphore --------------------------------------------------------- */

#define check_sem(L, w) ((l_sem *)tk_sync_self(L, w, "tether.Semaphore"))

static void ts_sem_release(l_sem *sem) {
  if (sem->q.head) ts_waitq_grant(&sem->q);
  else sem->value++;
}

/* tether.Semaphore(n [, opts]) -> Semaphore */
static int l_sem_new(lua_State *L) {
  lua_Integer n = check_int(L, 1, "tether.Semaphore", 0);
  const char *name = tk_sync_name(L, 2, "tether.Semaphore", sem_keys);
  lua_Integer max = LUA_MAXINTEGER;
  l_sem *sem;
  if (tk_opt_field(L, lua_istable(L, 2) ? 2 : 0, "max_value") != LUA_TNIL) {
    max = check_int(L, -1, "tether.Semaphore", 0);
    if (n > max)
      tk_argerror(L, 1, "tether.Semaphore", "initial value above max_value");
  }
  lua_pop(L, 1);
  sem = lua_newuserdatauv(L, sizeof *sem, 1);
  ts_waitq_init(&sem->q, TT_SYNC_SEMAPHORE, TT_OP_ACQUIRE);
  sem->value = n;
  sem->max = max;
  lua_pushvalue(L, UP_MT);
  lua_setmetatable(L, -2);
  set_name(L, &sem->q, name);
  return 1;
}

static int sem_acquire(lua_State *L, l_sem *sem, tt_task *t, int fast);

static int k_sem_wait(lua_State *L, int status, lua_KContext ctx) {
  tt_task *t = TT_UPSCHED(L)->current;
  (void)status; (void)ctx;
  lua_settop(L, 2);
  if (t->granted) {
    t->granted = 0;
    ((l_semguard *)lua_touserdata(L, 2))->held = 1;
    return 1;
  }
  tk_sync_cancelled(L, t);
  return sem_acquire(L, lua_touserdata(L, 1), t, 0);
}

/* Stack: 1 sem, 2 guard. */
static int sem_acquire(lua_State *L, l_sem *sem, tt_task *t, int fast) {
  if (sem->value > 0 && sem->q.head == NULL) {
    sem->value--;
    ((l_semguard *)lua_touserdata(L, 2))->held = 1;
    return fast ? tk_sync_done(L, 1) : 1;
  }
  ts_waitq_push(&sem->q, t);
  return tk_block(L, t, TT_W_SYNC, k_sem_wait);
}

/* Push a guard for `sem` (at 1), holding nothing yet. */
static l_semguard *push_guard(lua_State *L, l_sem *sem) {
  l_semguard *gd = lua_newuserdatauv(L, sizeof *gd, 1);
  gd->sem = sem;
  gd->held = 0;
  lua_pushvalue(L, UP_EXTRA);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return gd;
}

/* sem:acquire() -> guard  -- a checkpoint; the guard releases at <close> */
static int l_sem_acquire(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_sem *sem = check_sem(L, "sem:acquire");
  tt_task *t = tk_current(L, S, "sem:acquire");
  lua_settop(L, 1);
  push_guard(L, sem);       /* first: a memory error leaves nothing held */
  tk_sync_cancelled(L, t);
  return sem_acquire(L, sem, t, 1);
}

/* sem:acquire_nowait() -> guard  -- raises tether.WouldBlock at 0 */
static int l_sem_acquire_nowait(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_sem *sem = check_sem(L, "sem:acquire_nowait");
  l_semguard *gd;
  lua_settop(L, 1);
  gd = push_guard(L, sem);
  if (sem->value == 0 || sem->q.head) {
    tk_push_wouldblock(L, S, "sem:acquire_nowait");
    return lua_error(L);
  }
  sem->value--;
  gd->held = 1;
  return 1;
}

/* sem:release() */
static int l_sem_release(lua_State *L) {
  l_sem *sem = check_sem(L, "sem:release");
  if (sem->q.head == NULL && sem->value >= sem->max)
    return luaL_error(L, "sem:release: the value would exceed max_value "
                      "(%I)", (LUAI_UACINT)sem->max);
  ts_sem_release(sem);
  return 0;
}

/* sem.value, sem.max_value, and the methods */
static int l_sem_index(lua_State *L) {
  l_sem *sem = check_sem(L, "Semaphore");
  const char *k;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, UP_METHODS) != LUA_TNIL) return 1;
  k = lua_tostring(L, 2);
  if (k && strcmp(k, "value") == 0) {
    lua_pushinteger(L, sem->value);
    return 1;
  }
  if (k && strcmp(k, "max_value") == 0) {
    if (sem->max == LUA_MAXINTEGER) return 0;
    lua_pushinteger(L, sem->max);
    return 1;
  }
  if (k && strcmp(k, "name") == 0) {
    lua_getiuservalue(L, 1, UV_NAME);
    return 1;
  }
  return 0;
}

/* guard:__close(), guard:release(): release the unit if it still holds it */
static int l_guard_release(lua_State *L) {
  l_semguard *gd = tk_sync_self(L, "guard:release", "tether.SemaphoreGuard");
  if (gd->held) {
    gd->held = 0;
    if (gd->sem->q.head || gd->sem->value < gd->sem->max)
      ts_sem_release(gd->sem);
  }
  return 0;
}

/* ---- CapacityLimiter --------------------------------------------------- */

#define check_lim(L, w) ((l_lim *)tk_sync_self(L, w, "tether.CapacityLimiter"))

/* A total: an integer >= 1, or math.huge. */
static lua_Number check_total(lua_State *L, int arg, const char *fname) {
  lua_Number v;
  if (lua_type(L, arg) == LUA_TNUMBER && lua_tonumber(L, arg) == HUGE_VAL)
    return HUGE_VAL;
  v = (lua_Number)check_int(L, arg, fname, 1);
  return v;
}

/* tether.CapacityLimiter(total [, opts]) -> CapacityLimiter */
static int l_lim_new(lua_State *L) {
  lua_Number total = check_total(L, 1, "tether.CapacityLimiter");
  const char *name = tk_sync_name(L, 2, "tether.CapacityLimiter", name_keys);
  l_lim *lim = lua_newuserdatauv(L, sizeof *lim, 2);
  ts_waitq_init(&lim->q, TT_SYNC_LIMITER, TT_OP_ACQUIRE);
  lim->total = total;
  lim->borrowed = 0;
  lua_pushvalue(L, UP_MT);
  lua_setmetatable(L, -2);
  lua_newtable(L);
  lua_setiuservalue(L, -2, UV_AUX);
  set_name(L, &lim->q, name);
  return 1;
}

/*
** The borrowers table (at `b`) maps a task id to true (it holds a token) or
** false (it waits for one).  NOTE: a waiter makes its entry before it
** blocks, so handing it a token only changes an existing entry: releasing
** and growing `total` never allocate, and never fail half-way.
*/
static int is_borrower(lua_State *L, int b, unsigned id) {
  int r = lua_rawgeti(L, b, (lua_Integer)id) == LUA_TBOOLEAN &&
          lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

/* on: 1 holds a token, 0 waits for one, -1 neither (entry removed). */
static void set_borrower(lua_State *L, int b, unsigned id, int on) {
  if (on >= 0) lua_pushboolean(L, on);
  else lua_pushnil(L);
  lua_rawseti(L, b, (lua_Integer)id);
}

/* Hand free tokens to waiters, first come first served (borrowers at `b`). */
static void lim_hand_out(lua_State *L, l_lim *lim, int b) {
  while (lim->q.head && (lua_Number)lim->borrowed < lim->total) {
    set_borrower(L, b, lim->q.head->id, 1);
    lim->borrowed++;
    ts_waitq_grant(&lim->q);
  }
}

/* Task `id` gives its token back (borrowers at `b`). */
static void lim_release(lua_State *L, l_lim *lim, int b, unsigned id) {
  if (lim->q.head && (lua_Number)(lim->borrowed - 1) < lim->total) {
    set_borrower(L, b, lim->q.head->id, 1);
    set_borrower(L, b, id, -1);
    ts_waitq_grant(&lim->q);
    return;
  }
  set_borrower(L, b, id, -1);
  lim->borrowed--;
}

static int lim_acquire(lua_State *L, l_lim *lim, tt_task *t, int fast);

static int k_lim_wait(lua_State *L, int status, lua_KContext ctx) {
  tt_task *t = TT_UPSCHED(L)->current;
  (void)status; (void)ctx;
  lua_settop(L, 2);
  if (t->granted) {       /* the releaser made us a borrower */
    t->granted = 0;
    lua_settop(L, 1);
    return 1;
  }
  if (ts_cancelled(t)) {
    set_borrower(L, 2, t->id, -1);
    tk_sync_cancelled(L, t);
  }
  return lim_acquire(L, lua_touserdata(L, 1), t, 0);
}

/* Stack: 1 limiter, 2 borrowers. */
static int lim_acquire(lua_State *L, l_lim *lim, tt_task *t, int fast) {
  if ((lua_Number)lim->borrowed < lim->total && lim->q.head == NULL) {
    set_borrower(L, 2, t->id, 1);
    lim->borrowed++;
    lua_settop(L, 1);
    return fast ? tk_sync_done(L, 1) : 1;
  }
  set_borrower(L, 2, t->id, 0);           /* may raise: before it waits */
  ts_waitq_push(&lim->q, t);
  return tk_block(L, t, TT_W_SYNC, k_lim_wait);
}

/* lim:acquire() -> lim  -- a checkpoint; one token per task; `lim` is the
** guard for <close> */
static int l_lim_acquire(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_lim *lim = check_lim(L, "lim:acquire");
  tt_task *t = tk_current(L, S, "lim:acquire");
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, UV_AUX);
  if (is_borrower(L, 2, t->id))
    return luaL_error(L, "lim:acquire: this task already holds a token of "
                      "this limiter");
  tk_sync_cancelled(L, t);
  return lim_acquire(L, lim, t, 1);
}

/* lim:acquire_nowait() -> lim  -- raises tether.WouldBlock when none is free */
static int l_lim_acquire_nowait(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_lim *lim = check_lim(L, "lim:acquire_nowait");
  tt_task *t = tk_sync_owner(L, S, "lim:acquire_nowait");
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, UV_AUX);
  if (is_borrower(L, 2, t->id))
    return luaL_error(L, "lim:acquire_nowait: this task already holds a "
                      "token of this limiter");
  if ((lua_Number)lim->borrowed >= lim->total || lim->q.head) {
    tk_push_wouldblock(L, S, "lim:acquire_nowait");
    return lua_error(L);
  }
  set_borrower(L, 2, t->id, 1);
  lim->borrowed++;
  lua_settop(L, 1);
  return 1;
}

/* lim:release()  -- only by a task that holds a token */
static int l_lim_release(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_lim *lim = check_lim(L, "lim:release");
  tt_task *t = S->current && S->current->co == L ? S->current : NULL;
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, UV_AUX);
  if (t == NULL || !is_borrower(L, 2, t->id))
    return luaL_error(L, "lim:release: this task holds no token of this "
                      "limiter");
  lim_release(L, lim, 2, t->id);
  return 0;
}

/* __close: give the token back if the closing task still holds one. */
static int l_lim_close(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_lim *lim = check_lim(L, "lim:__close");
  tt_task *t = S->current;
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, UV_AUX);
  if (t && t->co == L && is_borrower(L, 2, t->id)) lim_release(L, lim, 2, t->id);
  return 0;
}

/* lim.total, lim.borrowed, lim.available, and the methods */
static int l_lim_index(lua_State *L) {
  l_lim *lim = check_lim(L, "CapacityLimiter");
  const char *k;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, UP_METHODS) != LUA_TNIL) return 1;
  k = lua_tostring(L, 2);
  if (k == NULL) return 0;
  if (strcmp(k, "total") == 0) {
    if (lim->total == HUGE_VAL) lua_pushnumber(L, HUGE_VAL);
    else lua_pushinteger(L, (lua_Integer)lim->total);
  } else if (strcmp(k, "borrowed") == 0) {
    lua_pushinteger(L, lim->borrowed);
  } else if (strcmp(k, "available") == 0) {
    if (lim->total == HUGE_VAL) lua_pushnumber(L, HUGE_VAL);
    else if ((lua_Number)lim->borrowed >= lim->total) lua_pushinteger(L, 0);
    else lua_pushinteger(L, (lua_Integer)lim->total - lim->borrowed);
  } else if (strcmp(k, "name") == 0) {
    lua_getiuservalue(L, 1, UV_NAME);
  } else {
    return 0;
  }
  return 1;
}

/* lim.total = n  -- growing it wakes waiters */
static int l_lim_newindex(lua_State *L) {
  l_lim *lim = check_lim(L, "CapacityLimiter");
  const char *k = lua_tostring(L, 2);
  if (k == NULL || strcmp(k, "total") != 0)
    return luaL_error(L, "CapacityLimiter: field '%s' cannot be set (only "
                      "total can)", k ? k : luaL_typename(L, 2));
  lim->total = check_total(L, 3, "lim.total");
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, UV_AUX);
  lim_hand_out(L, lim, 2);
  return 0;
}

/* ---- Condition --------------------------------------------------------- */

#define check_cond(L, w) ((l_cond *)tk_sync_self(L, w, "tether.Condition"))

/* tether.Condition([lock] [, opts]) -> Condition; upvalue 3 is the Lock
** metatable */
static int l_cond_new(lua_State *L) {
  int has_lock = 0, opts = 1;
  const char *name;
  l_cond *c;
  l_lock *lk;
  if (lua_type(L, 1) == LUA_TUSERDATA) {
    if (!lua_getmetatable(L, 1) || !lua_rawequal(L, -1, UP_EXTRA))
      tk_argerror(L, 1, "tether.Condition", "tether.Lock expected");
    lua_pop(L, 1);
    has_lock = 1;
    opts = 2;
  } else if (!lua_isnoneornil(L, 1) && !lua_istable(L, 1)) {
    lua_pushfstring(L, "tether.Lock or options table expected, got %s",
                    luaL_typename(L, 1));
    tk_argerror(L, 1, "tether.Condition", lua_tostring(L, -1));
  } else if (lua_isnil(L, 1)) {
    opts = 2;
  }
  name = tk_sync_name(L, opts, "tether.Condition", name_keys);
  lua_settop(L, 2);
  if (has_lock) {
    lk = lua_touserdata(L, 1);
    lua_pushvalue(L, 1);
  } else {
    lk = new_lock(L, UP_EXTRA, NULL);
  }                                                         /* 3: the lock */
  c = lua_newuserdatauv(L, sizeof *c, 2);
  ts_waitq_init(&c->q, TT_SYNC_CONDITION, TT_OP_WAIT);
  c->lock = lk;
  lua_pushvalue(L, UP_MT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, -2, UV_AUX);
  set_name(L, &c->q, name);
  return 1;
}

static int k_cond_relocked(lua_State *L, int status, lua_KContext ctx) {
  tt_task *t = TT_UPSCHED(L)->current;
  (void)status; (void)ctx;
  t->granted = 0;
  tk_sync_cancelled(L, t);
  return 0;
}

/* Woken without a notification (a cancellation): take the lock back,
** shielded (TT_W_RELOCK is not woken by cancellations), then raise. */
static int cond_relock(lua_State *L, l_cond *c, tt_task *t) {
  l_lock *lk = c->lock;
  if (lk->owner == 0) {
    lk->owner = t->id;
    tk_sync_cancelled(L, t);
    return 0;
  }
  ts_waitq_push(&lk->q, t);
  return tk_block(L, t, TT_W_RELOCK, k_cond_relocked);
}

/* After cond:wait blocked: a notify moved the task onto the lock's queue,
** and the lock was then handed to it (granted); or a cancellation woke it
** on the condition's queue. */
static int k_cond_wait(lua_State *L, int status, lua_KContext ctx) {
  tt_task *t = TT_UPSCHED(L)->current;
  (void)status; (void)ctx;
  if (t->granted) {
    t->granted = 0;
    return 0;
  }
  return cond_relock(L, lua_touserdata(L, 1), t);
}

/* The task `t` holds the lock of `c`, or raise for operation `op`. */
static void check_holder(lua_State *L, l_cond *c, tt_task *t, const char *op) {
  if (t == NULL || c->lock->owner != t->id)
    luaL_error(L, "%s: the calling task must hold cond.lock", op);
}

/* cond:wait()  -- a checkpoint; releases cond.lock while waiting, and
** returns or raises holding it again */
static int l_cond_wait(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_cond *c = check_cond(L, "cond:wait");
  tt_task *t = tk_current(L, S, "cond:wait");
  check_holder(L, c, t, "cond:wait");
  lua_settop(L, 1);
  tk_sync_cancelled(L, t);   /* raises holding the lock: nothing to undo */
  ts_lock_release(c->lock);
  ts_waitq_push(&c->q, t);
  return tk_block(L, t, TT_W_SYNC, k_cond_wait);
}

/* Move up to `n` waiters of `c` onto its lock's queue: each gets the lock in
** turn and returns from cond:wait (no thundering herd). */
static void cond_notify(l_cond *c, lua_Integer n) {
  tt_waitq *lq = &c->lock->q;
  while (n-- > 0 && c->q.head) {
    tt_task *w = c->q.head;
    TT_LIST_REMOVE(c->q.head, w, wlink);
    TT_LIST_APPEND(lq->head, w, wlink);
    w->wlist = &lq->head;
    w->wait = TT_W_RELOCK;
    w->granted = 0;
  }
}

/* cond:notify([n])  -- wakes n waiters (default 1); not a checkpoint */
static int l_cond_notify(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_cond *c = check_cond(L, "cond:notify");
  lua_Integer n = lua_isnoneornil(L, 2) ? 1 : check_int(L, 2, "cond:notify", 0);
  check_holder(L, c, S->current && S->current->co == L ? S->current : NULL,
               "cond:notify");
  cond_notify(c, n);
  return 0;
}

/* cond:notify_all() */
static int l_cond_notify_all(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_cond *c = check_cond(L, "cond:notify_all");
  check_holder(L, c, S->current && S->current->co == L ? S->current : NULL,
               "cond:notify_all");
  cond_notify(c, LUA_MAXINTEGER);
  return 0;
}

/* cond.lock, and the methods */
static int l_cond_index(lua_State *L) {
  const char *k;
  check_cond(L, "Condition");
  lua_pushvalue(L, 2);
  if (lua_rawget(L, UP_METHODS) != LUA_TNIL) return 1;
  k = lua_tostring(L, 2);
  if (k && strcmp(k, "lock") == 0) {
    lua_getiuservalue(L, 1, UV_AUX);
    return 1;
  }
  if (k && strcmp(k, "name") == 0) {
    lua_getiuservalue(L, 1, UV_NAME);
    return 1;
  }
  return 0;
}

/* ---- dump -------------------------------------------------------------- */

/* Push what the blocked task `t` (TT_W_SYNC or TT_W_RELOCK) waits on, as
** "receive from channel 'jobs'". */
void tk_sync_describe(lua_State *L, tt_task *t) {
  static const char *const ops[] = {"", "acquire of ", "send to ",
                                    "receive from "};
  tt_waitq *q = TT_WAITQ_OF(t);
  if (q == NULL) {
    lua_pushliteral(L, "nothing");
    return;
  }
  push_what(L, q);
  if (t->wait == TT_W_RELOCK)
    lua_pushfstring(L, "re-acquire of %s (in a condition wait)",
                    lua_tostring(L, -1));
  else
    lua_pushfstring(L, "%s%s", ops[q->op], lua_tostring(L, -1));
  lua_remove(L, -2);
}

/* ---- tables and open --------------------------------------------------- */

static const luaL_Reg event_methods[] = {
  {"set", l_event_set}, {"is_set", l_event_is_set}, {"wait", l_event_wait},
  {NULL, NULL}
};
static const luaL_Reg lock_methods[] = {
  {"acquire", l_lock_acquire}, {"acquire_nowait", l_lock_acquire_nowait},
  {"release", l_lock_release}, {"locked", l_lock_locked},
  {NULL, NULL}
};
static const luaL_Reg lock_meta[] = {
  {"__close", l_lock_close}, {"__tostring", l_sync_tostring}, {NULL, NULL}
};
static const luaL_Reg sem_methods[] = {
  {"acquire", l_sem_acquire}, {"acquire_nowait", l_sem_acquire_nowait},
  {"release", l_sem_release}, {NULL, NULL}
};
static const luaL_Reg guard_meta[] = {
  {"__close", l_guard_release}, {NULL, NULL}
};
static const luaL_Reg guard_methods[] = {
  {"release", l_guard_release}, {NULL, NULL}
};
static const luaL_Reg lim_methods[] = {
  {"acquire", l_lim_acquire}, {"acquire_nowait", l_lim_acquire_nowait},
  {"release", l_lim_release}, {NULL, NULL}
};
static const luaL_Reg lim_meta[] = {
  {"__close", l_lim_close}, {"__newindex", l_lim_newindex},
  {"__tostring", l_sync_tostring}, {NULL, NULL}
};
static const luaL_Reg cond_methods[] = {
  {"wait", l_cond_wait}, {"notify", l_cond_notify},
  {"notify_all", l_cond_notify_all}, {NULL, NULL}
};
static const luaL_Reg tostring_meta[] = {
  {"__tostring", l_sync_tostring}, {NULL, NULL}
};

/*
** Make a type and push its metatable: `meta` and `methods` get the three
** upvalues (S, the metatable, the value at `extra` or nil); __index is the
** methods table, or `index` (with the methods as a fourth upvalue).  The
** constructor `ctor` goes into the module table at `mod` as `cname`.
*/
static void open_type(lua_State *L, tt_sched *S, int mod, const char *tname,
                      const luaL_Reg *meta, const luaL_Reg *methods,
                      lua_CFunction index, int extra, const char *cname,
                      lua_CFunction ctor) {
  int mt;
  lua_newtable(L);
  mt = lua_gettop(L);
#define PUSH_UPS() do { lua_pushlightuserdata(L, S); lua_pushvalue(L, mt); \
    if (extra) lua_pushvalue(L, extra); else lua_pushnil(L); } while (0)
  PUSH_UPS();
  luaL_setfuncs(L, meta, 3);
  lua_newtable(L);
  PUSH_UPS();
  luaL_setfuncs(L, methods, 3);
  if (index) {
    int methods_idx = lua_gettop(L);
    PUSH_UPS();
    lua_pushvalue(L, methods_idx);
    lua_pushcclosure(L, index, 4);
    lua_setfield(L, mt, "__index");
    lua_pop(L, 1);
  } else {
    lua_setfield(L, mt, "__index");
  }
  lua_pushstring(L, tname);
  lua_setfield(L, mt, "__name");
  if (ctor) {
    PUSH_UPS();
    lua_pushcclosure(L, ctor, 3);
    lua_setfield(L, mod, cname);
  }
#undef PUSH_UPS
}

/* Register Event, Lock, Semaphore, CapacityLimiter and Condition into the
** module table on top of the stack. */
void tt_sync_open(lua_State *L, tt_sched *S) {
  int mod = lua_gettop(L), lock_mt, guard_mt;
  open_type(L, S, mod, "tether.Event", tostring_meta, event_methods, NULL, 0,
            "Event", l_event_new);
  lua_pop(L, 1);
  open_type(L, S, mod, "tether.Lock", lock_meta, lock_methods, NULL, 0,
            "Lock", l_lock_new);
  lock_mt = lua_gettop(L);
  open_type(L, S, mod, "tether.SemaphoreGuard", guard_meta, guard_methods,
            NULL, 0, NULL, NULL);
  guard_mt = lua_gettop(L);
  open_type(L, S, mod, "tether.Semaphore", tostring_meta, sem_methods,
            l_sem_index, guard_mt, "Semaphore", l_sem_new);
  lua_pop(L, 1);
  open_type(L, S, mod, "tether.CapacityLimiter", lim_meta, lim_methods,
            l_lim_index, 0, "CapacityLimiter", l_lim_new);
  lua_pop(L, 1);
  open_type(L, S, mod, "tether.Condition", tostring_meta, cond_methods,
            l_cond_index, lock_mt, "Condition", l_cond_new);
  lua_settop(L, mod);
}
