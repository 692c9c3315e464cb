/* internal.h - types and functions shared by the files of the tether core */
#ifndef TETHER_INTERNAL_H
#define TETHER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "lua.h"
#include "lauxlib.h"
#include <uv.h>

#include "tether.h"
#include "list.h"

/*
** Where a function may run is said by its prefix (doc/internals.md):
**   ts_  safe anywhere, libuv callbacks included: never yields, never raises
**   tk_  runs on a task coroutine: may raise a Lua error or yield
**   l_   a Lua binding (lua_CFunction)
**   k_   a continuation (lua_KFunction), resumed after a yield
*/

typedef struct tt_sched tt_sched;
typedef struct tt_task tt_task;
typedef struct tt_scope tt_scope;
typedef struct tt_group tt_group;
typedef struct tt_timer tt_timer;
typedef struct tt_heapslot tt_heapslot;
typedef struct tt_io tt_io;     /* io.h */
typedef struct tt_op tt_op;
typedef struct tt_loopres tt_loopres; /* sched.c: a session's libuv handles */

#define TT_NEVER UINT64_MAX /* a deadline that never comes */

/* An entry of the scheduler's timer heap, embedded in a task or a scope. */
struct tt_timer {
  uint64_t deadline; /* ns on the scheduler's clock (ts_now) */
  int index;         /* position in the heap; -1 when not pending (the
                        start order that breaks ties is in the heap slot) */
  uint8_t kind;      /* TT_TIMER_SLEEP (in a task) or TT_TIMER_DEADLINE (scope) */
};
enum { TT_TIMER_SLEEP, TT_TIMER_DEADLINE };

/* Why a scope was cancelled: the text a Cancelled error shows. */
enum {
  TT_REASON_NONE,
  TT_REASON_USER,      /* cancel(reason): text in reason_ref, if any */
  TT_REASON_FAILED,    /* a task of the group failed: name in source_ref */
  TT_REASON_DEADLINE,
  TT_REASON_INTERRUPT, /* SIGINT */
  TT_REASON_DAEMON,    /* the group's main work is done */
  TT_REASON_DEADLOCK
};

enum { TT_SCOPE_PLAIN, TT_SCOPE_GROUP, TT_SCOPE_TASK };

/*
** A cancel scope.  Scopes form one tree per run: a scope's parent is the
** scope that was innermost when it was entered, in the same task, or, for
** a task's own root scope, the scope of the group the task belongs to.
** Cancelling a scope cancels its whole subtree except shielded subtrees.
*/
struct tt_scope {
  tt_scope *parent;
  tt_scope *children;  /* child scopes (circular list through `link`) */
  TT_LINK(tt_scope) link;
  tt_task *tasks;      /* tasks whose innermost scope this is */
  tt_task *owner;      /* the task that entered it */
  tt_timer timer;      /* the deadline; deadline TT_NEVER when none */
  int reason_ref;      /* registry refs: cancel reason text, failing task's name, */
  int source_ref;
  int exc_ref;         /* and the Cancelled raised for it (groups, plain scopes) */
  uint8_t kind;        /* TT_SCOPE_* */
  uint8_t cancel_called;
  uint8_t shield;
  uint8_t caught;      /* cancelled_caught */
  uint8_t reason;      /* TT_REASON_* */
  uint8_t active;      /* entered and not yet exited */
  uint8_t used;        /* entered once (a scope runs once) */
};

enum { TT_T_READY, TT_T_RUNNING, TT_T_BLOCKED, TT_T_DONE };

/* What a blocked task waits for. */
enum {
  TT_W_NONE,
  TT_W_SLEEP,   /* its timer (or forever) */
  TT_W_TASK,    /* another task to finish: on that task's `waiters` */
  TT_W_JOIN,    /* the children of the group whose body it ran */
  TT_W_START,   /* a task it started to call started() or finish */
  TT_W_LIMIT,   /* a free slot in a group with a limit */
  TT_W_IO,      /* an I/O operation: t->op (io.h) */
  TT_W_SYNC,    /* a primitive of sync.c or a channel: on its tt_waitq */
  TT_W_RELOCK   /* a Condition's lock, taken back shielded (not cancellable) */
};

enum { TT_O_NONE, TT_O_OK, TT_O_FAILED, TT_O_CANCELLED };

/* What kind of root a task is (a task without a group). */
enum { TT_ROOT_NONE, TT_ROOT_RUN, TT_ROOT_LAUNCH };

/* The clock a root asks for: whatever the session has, or one of them. */
enum { TT_CLOCK_ANY, TT_CLOCK_REAL, TT_CLOCK_VIRTUAL };

/* Task userdata user values.  TT_UV_ERRTB holds the function that spawned
** the task (spawn_line), or, while an error's traceback is recorded, the
** table {error, traceback, that function}: one slot for both (task.c). */
enum { TT_UV_CO = 1, TT_UV_NAME, TT_UV_ERRTB,
       TT_TASK_NUV = TT_UV_ERRTB };

struct tt_task {
  tt_scope root;            /* the task's own scope (t:cancel cancels it) */
  tt_scope *scope;          /* innermost active scope */
  TT_LINK(tt_task) slink;   /* in scope->tasks */
  TT_LINK(tt_task) glink;   /* in group->children */
  TT_LINK(tt_task) wlink;   /* in the list it waits on */
  tt_task **wlist;          /* head of that list, NULL when on none */
  tt_task *rnext;           /* ready queue */
  tt_task *waiters;         /* tasks blocked in t:wait() on this one, and the
                               one blocked in g:start() for it (TT_W_START) */
  tt_op *op;                /* TT_W_IO: the operation it waits on */
  tt_group *group;          /* while not done */
  lua_State *co;
  tt_sched *S;
  tt_timer timer;           /* sleep */
  int slot;                 /* index in the scheduler's anchor table while
                               not done; 0 when not anchored */
  int nres;                 /* values left on co when done */
  unsigned id;
  int ytop;                 /* stack top at its last tk_yield */
  int spawn_line;           /* line of the spawn call; 0 when unknown */
  uint8_t wait;             /* TT_W_* */
  /* NOTE: states and flags in bits: every task pays for each byte of this
     struct (256 bytes, the handle a 352-byte block with its 3 user values). */
  unsigned state : 2;       /* TT_T_* */
  unsigned outcome : 2;     /* TT_O_* */
  unsigned wake_cancel : 1; /* woken because of a cancellation */
  unsigned daemon : 1;
  unsigned starting : 1;    /* spawned by g:start, started() not yet called */
  unsigned granted : 1;     /* TT_W_LIMIT, TT_W_SYNC: what it waits for
                               (a slot, a value, a token) was handed over */
  unsigned forever : 1;     /* TT_W_SLEEP without a deadline */
  unsigned reraise : 1;     /* our code re-raises an error: keep its traceback */
  unsigned observed : 1;    /* t:wait, t:result or t:error was called on it */
  unsigned rootkind : 2;    /* TT_ROOT_*: roots are linked in S->roots by glink */
  unsigned deadlocked : 2;  /* root: 1 cancelled as deadlocked, 2 abandoned */
  lua_KFunction yk;         /* the continuation and context given there */
  lua_KContext yctx;
};

enum { TT_G_OPEN, TT_G_JOINING, TT_G_CLOSED };

struct tt_group {
  tt_scope scope;           /* kind TT_SCOPE_GROUP, owner runs the body */
  tt_sched *S;
  tt_task *children;        /* unfinished tasks */
  tt_task *lwaiters;        /* tasks waiting in spawn for a slot (FIFO) */
  int nlive;                /* unfinished children */
  int nwork;                /* ... of which not daemons */
  int limit;                /* 0: no limit */
  int nreserved;            /* slots handed to woken spawners, not yet used */
  int nerr;
  int errors_ref, infos_ref; /* registry refs: recorded errors and their infos, */
  int eg_ref;               /* and the ErrorGroup holding them */
  int name_ref;
  uint8_t state;            /* TT_G_* */
  uint8_t supervisor;
  uint8_t body_done;
  uint8_t body_returned;
  uint8_t daemons_cancelled;
  uint8_t lost_error;       /* an error could not be recorded (no memory) */
  uint8_t waited;           /* the join had to wait for children */
  uint8_t yielded;          /* the join yielded once without waiting */
  uint8_t body_cancelled;   /* the body ended by a Cancelled */
};

/* Registry refs of the error classes, kept in the scheduler. */
enum {
  TT_CLS_ERROR, TT_CLS_CANCELLED, TT_CLS_TIMEOUT, TT_CLS_IO,
  TT_CLS_ERRORGROUP, TT_CLS_INTERRUPTED,
  TT_CLS_CLOSED, TT_CLS_BROKEN, TT_CLS_BUSY, TT_CLS_INCOMPLETE, /* IOError's */
  TT_CLS_PROCESS, TT_CLS_END_OF_CHANNEL, TT_CLS_WOULD_BLOCK,    /* Error's */
  TT_CLS_N
};

/* Metatables of I/O objects, kept in the scheduler (S->io_mt). */
enum { TT_MT_STREAM, TT_MT_LISTENER, TT_MT_UDP, TT_MT_PROCESS, TT_MT_SIGNAL,
       TT_MT_FILE, TT_MT_DIR, TT_MT_N };

/*
** The scheduler: one per Lua state, a userdata anchored in the registry.
** A session lasts from the start of a first root (tether.run's or a
** launched one) to the end of the last live one; it owns handles on one
** loop and, on the virtual clock, the time.
*/
struct tt_sched {
  lua_State *L;             /* the main thread */
  uv_loop_t *loop;          /* the session's loop (the last one used) */
  uv_loop_t *host_loop;     /* tether_set_loop's; NULL: picked per session */
  tt_loopres *lr;           /* the session's handles (NULL between sessions) */
  uv_signal_t sigint;       /* tether.run's */
  tt_task *current;         /* the task being resumed, or NULL */
  tt_task *root;            /* tether.run's root while it runs */
  tt_task *roots;           /* live roots (through glink) */
  int nroots;
  tt_task *rhead, *rtail;   /* ready queue */
  lua_State *from;          /* the thread that resumes tasks (tether.run's, or L) */
  tt_heapslot *heap;        /* timer heap (timer.c) */
  int nheap, capheap;
  uint64_t seq;
  uint64_t t0;              /* hrtime at load: tether.now() counts from it */
  uint64_t vnow;            /* the virtual clock's time, when vclock */
  int nholds;               /* operations and children holding the virtual clock */
  uint8_t vclock;           /* the session runs on the virtual clock */
  uint8_t vjump;            /* the coming poll is the last before a jump */
  uint8_t in_run;           /* tether.run is active: it owns SIGINT */
  uint8_t driving;          /* tasks or handlers run from the loop: no nesting */
  uint8_t sigint_open;
  int running;              /* a session is active */
  int interrupted;
  int unhandled_ref;        /* registry refs: tether.on_unhandled's handler, */
  int guard_ref;            /* the guard that ends a session on luv's loop, */
  int dump_ref;             /* and the dump taken when a deadlock was found */
  int nhandles;             /* handles of ours not yet closed, and I/O
                               objects' handles and requests in flight */
  tt_io *ios;               /* open I/O objects (io_op.c) */
  int nios;
  void *sigpipe_old;        /* SIGPIPE's disposition before the run */
  int ntasks;               /* live tasks */
  int nforever;             /* tasks sleeping without a deadline */
  int anchor_ref;           /* registry ref: array of the live tasks' userdata */
  int nanchor, anchor_peak; /* its length, and its largest length since built */
  unsigned next_id;
  int cls[TT_CLS_N];
  int task_mt, group_mt, scope_mt; /* registry refs of metatables */
  int io_mt[TT_MT_N];       /* ... of the I/O kinds (io.h) */
  char *scratch;            /* libuv reads land here (io_stream.c) */
  /* A task's coroutine resumed by hand: the thread whose coroutine.resume
     must raise, its own hook (restored first), and the message. */
  lua_State *fh_L;
  lua_Hook fh_hook;
  int fh_mask, fh_count;
  char fh_msg[200];
};

/* Registry keys (addresses, never strings). */
extern const char tt_sched_key;
extern const char tt_class_key;   /* marks a class table */
extern const char tt_info_key;    /* an ErrorGroup's hidden info array */

#define TT_UPSCHED(L) ((tt_sched *)lua_touserdata(L, lua_upvalueindex(1)))

/* base.c: helpers for every file */
int tk_is_callable(lua_State *L, int idx);
void tk_push_ref(lua_State *L, int ref);
int tk_len_n(lua_State *L, int idx);
lua_Number tk_checknum(lua_State *L, int arg);
void *tk_checkself(lua_State *L, int mtref, const char *tname,
                   const char *what);
void tk_push_safe_tostring(lua_State *L, int idx);
int tk_argerror(lua_State *L, int arg, const char *fname, const char *msg);
int tk_check_opts(lua_State *L, int arg, const char *fname,
                  const char *const keys[]);
const char *tk_check_cstr(lua_State *L, int arg, const char *fname,
                          const char *what, size_t *len);
int tk_opt_field(lua_State *L, int idx, const char *key);
int tk_opt_bool(lua_State *L, int idx, const char *key, int def,
                const char *fname);
lua_Number tk_opt_num(lua_State *L, int idx, const char *key, lua_Number def,
                      const char *fname);
const char *tk_opt_str(lua_State *L, int idx, const char *key,
                       const char *fname);

/* sched.c */
uint64_t ts_now(tt_sched *S);
void ts_clock_hold(tt_sched *S, int delta);
void ts_ready(tt_sched *S, tt_task *t);
void ts_wake(tt_task *t, int cancel);
int tk_yield(lua_State *L, tt_task *t, lua_KFunction k, lua_KContext ctx);
int tk_yield_results(lua_State *L, int nres);  /* io_op.c */
int tk_block(lua_State *L, tt_task *t, int wait, lua_KFunction k);
tt_task *tk_current(lua_State *L, tt_sched *S, const char *op);
int tk_checkpoint_k(lua_State *L, int status, lua_KContext ctx);
int tk_cancellable_k(lua_State *L, int status, lua_KContext ctx);
int tk_root_args(lua_State *L, const char *fname, int *clock, int *nameidx);
tt_task *tk_root_start(lua_State *L, tt_sched *S, int fidx, int nameidx,
                       int kind, int clock, const char *fname);
int ts_ready_run(tt_sched *S);
void ts_shutdown(tt_sched *S);
void tt_sched_open(lua_State *L, tt_sched *S);

/* embed.c */
uv_loop_t *ts_luv_loop(lua_State *L);
uv_loop_t *tk_pick_loop(lua_State *L, tt_sched *S, const char *fname,
                        int *busy);
void ts_launch_done(tt_sched *S, lua_State *L, tt_task *t, int hidx);
void tk_set_unhandled(lua_State *L, tt_sched *S, int idx);
int l_launch(lua_State *L);
int l_on_unhandled(lua_State *L);
void tt_embed_open(lua_State *L, tt_sched *S);

/* timer.c */
int ts_timer_start(tt_sched *S, tt_timer *tm, uint64_t deadline);
void ts_timer_stop(tt_sched *S, tt_timer *tm);
uint64_t ts_timer_next(tt_sched *S);
tt_timer *ts_timer_pop_due(tt_sched *S, uint64_t now);
void ts_timer_free(tt_sched *S);

/* scope.c */
void ts_scope_init(tt_scope *s, int kind);
int tk_scope_enter(lua_State *L, tt_task *t, tt_scope *s);
void ts_scope_exit(tt_sched *S, tt_task *t, tt_scope *s);
void ts_scope_release(lua_State *L, tt_scope *s);
void ts_cancel(tt_sched *S, tt_scope *s, int reason);
void ts_wake_subtree(tt_scope *s);
void tk_cancel_reason(lua_State *L, tt_sched *S, tt_scope *s, int idx);
uint64_t ts_deadline_after(tt_sched *S, double d);
tt_scope *ts_cancelled(tt_task *t);
tt_scope *ts_cancelled_from(tt_scope *s);
int tk_raise_cancelled(lua_State *L, tt_sched *S, tt_scope *s);
void ts_task_set_scope(tt_task *t, tt_scope *s);
void tt_scope_open(lua_State *L, tt_sched *S);

/* task.c */
tt_task *tk_task_new(lua_State *L, tt_sched *S, int fidx, int nargs);
void tk_push_task(lua_State *L, tt_task *t);
void tk_push_task_name(lua_State *L, tt_task *t);
void tk_task_mark_spawn(lua_State *L, tt_task *t);
void tk_set_task_origin(lua_State *L, tt_task *t);
const char *ts_wait_name(int wait);
int tt_msgh(lua_State *L);
void tk_reraise_mark(lua_State *L, tt_sched *S);
void ts_task_finished(tt_sched *S, lua_State *L, tt_task *t);
void ts_task_unanchor(lua_State *L, tt_task *t);
void tk_push_current_traceback(lua_State *L, tt_sched *S, int eidx);
int tk_is_cancelled(lua_State *L, tt_sched *S, int idx);
int tk_task_outcome(lua_State *L, tt_sched *S, tt_task *t, int idx);
void tt_task_open(lua_State *L, tt_sched *S);

/* group.c */
void tk_group_record(lua_State *L, tt_group *g, int eidx, int tbidx, int nameidx);
void tk_group_record_task(lua_State *L, tt_group *g, int eidx, int tbidx,
                          int nameidx, tt_task *t);
void tk_group_fail(lua_State *L, tt_group *g, int nameidx);
void ts_group_child_done(tt_sched *S, tt_task *t);
int l_with_group(lua_State *L);
int l_group_spawn(lua_State *L);
tt_task *tk_group_spawn(lua_State *L, tt_group *g, int fidx);
void tt_group_open(lua_State *L, tt_sched *S);

/* errors.c */
void tk_push_class(lua_State *L, tt_sched *S, int cls);
int tk_isinstance(lua_State *L, int idx, int clsidx);
int tk_is_class(lua_State *L, int idx);
void tk_new_error(lua_State *L, tt_sched *S, int cls, const char *msg);
void tk_new_ioerror(lua_State *L, tt_sched *S, int cls, int err,
                    const char *op);
void tt_errors_open(lua_State *L, tt_sched *S);

/* errgroup.c */
void tk_new_errorgroup(lua_State *L, tt_sched *S, const char *msg, int errs, int infos);
int tk_errorgroup_new(lua_State *L, int cls);
int l_errorgroup_tostring(lua_State *L);
int tk_is_errorgroup_class(lua_State *L, tt_sched *S, int idx);
int tk_eg_drop_cancelled(lua_State *L, tt_sched *S, int idx);
void tt_errgroup_open(lua_State *L, tt_sched *S);

/* gather.c */
void tt_gather_open(lua_State *L, tt_sched *S);

/* io_op.c, for dump.c */
void tk_io_push_wait(lua_State *L, tt_task *t);
void tk_io_dump(lua_State *L, tt_sched *S, int lines);

/* sync.c, channel.c (their shared types: sync.h) */
void tk_sync_describe(lua_State *L, tt_task *t);
void tt_sync_open(lua_State *L, tt_sched *S);
void tt_channel_open(lua_State *L, tt_sched *S);

/* dump.c */
void tk_dump_push(lua_State *L, tt_sched *S);
void tt_dump_open(lua_State *L, tt_sched *S);

#endif
