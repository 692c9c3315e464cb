/* io_op.c - the operation mechanism: I/O objects, operations a task awaits, I/O errors */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

/* ---- objects ---------------------------------------------------------- */

/* The root task that `t` runs under (NULL for no task). */
static tt_task *ts_root_of(tt_task *t) {
  tt_scope *s;
  if (t == NULL) return NULL;
  for (s = &t->root; s->parent; s = s->parent) {}
  return s->owner;
}

/* __gc of every I/O userdata: close what is still open. */
static int l_io_gc(lua_State *L) {
  tt_io **ud = lua_touserdata(L, 1);
  if (ud && *ud) {
    tt_io *io = *ud;
    io->ud = NULL;
    *ud = NULL;
    ts_io_close(io);
  }
  return 0;
}

/*
** Push a new userdata of metatable `mtref` for a new object of `size`
** bytes (a struct whose first member is a tt_io), zeroed, open and listed
** in the scheduler.  The caller initialises its handles and calls
** ts_io_hold for each.
*/
void *tk_io_new(lua_State *L, tt_sched *S, size_t size,
                const tt_io_kind *kind, int mtref) {
  tt_io **ud = lua_newuserdatauv(L, sizeof(tt_io *), 1);
  tt_io *io;
  *ud = NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, mtref);
  lua_setmetatable(L, -2);
  io = calloc(1, size);
  if (io == NULL) luaL_error(L, "not enough memory");
  io->S = S;
  io->kind = kind;
  io->ud = ud;
  io->root = ts_root_of(S->current);
  io->nhold = 1;                      /* released by ts_io_close */
  *ud = io;
  TT_LIST_APPEND(S->ios, io, link);
  S->nios++;
  return io;
}

/* The object of the userdata `self` (argument 1; NULL when it was freed),
** checking its metatable; `what` names the method for the error ("s:read"). */
tt_io *tk_io_check(lua_State *L, int mtref, const char *what) {
  tt_io **ud = tk_checkself(L, mtref, "tether I/O object", what);
  return *ud;
}

/* As tk_io_check, and raise ClosedResourceError (operation `op`) when the
** object is closed. */
tt_io *tk_io_checkopen(lua_State *L, int mtref, const char *what,
                       const char *op) {
  tt_io *io = tk_io_check(L, mtref, what);
  if (io == NULL || io->closed) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &tt_sched_key);
    tk_raise_closed(L, lua_touserdata(L, -1), op);
  }
  return io;
}

/* libuv uses the object's memory for one more handle or request. */
void ts_io_hold(tt_io *io) {
  io->nhold++;
  io->S->nhandles++;
}

/* Drop a hold that S->nhandles does not count (the open hold, a task's). */
void ts_io_unhold(tt_io *io) {
  if (--io->nhold > 0) return;        /* the open hold keeps it till closed */
  if (io->ud) *io->ud = NULL;
  free(io);
}

/* ... one less: the object is freed once closed and nothing holds it. */
void ts_io_release(tt_io *io) {
  io->S->nhandles--;
  ts_io_unhold(io);
}

/*
** Close `io`: idempotent, never blocks, never raises.  The kind begins
** closing its handles (their callbacks release the object); operations
** still waiting on it complete with ClosedResourceError.
*/
void ts_io_close(tt_io *io) {
  tt_sched *S = io->S;
  if (io->closed) return;
  io->closed = 1;
  TT_LIST_REMOVE(S->ios, io, link);
  S->nios--;
  io->kind->close(io);
  ts_io_unhold(io);                   /* the open hold */
}

/* obj:close() -- also __close; never a checkpoint, never raises Cancelled */
int l_io_close(lua_State *L) {
  tt_io **ud = lua_touserdata(L, 1);
  luaL_argexpected(L, ud != NULL, 1, "tether I/O object");
  if (*ud) ts_io_close(*ud);
  return 0;
}

/* Close every object still open (tether.run ends). */
void ts_io_close_all(tt_sched *S) {
  while (S->ios) ts_io_close(S->ios);
}

/* Close the objects that the tasks of `root` opened: it is done and other
** roots go on.  (Rescans from the head: a close may close others.) */
void ts_io_close_root(tt_sched *S, tt_task *root) {
  tt_io *io = S->ios;
  while (io) {
    if (io->root == root) {
      ts_io_close(io);
      io = S->ios;
      continue;
    }
    io = io->link.next;
    if (io == S->ios) break;
  }
}

/*
** Create the metatable of an I/O kind: methods `m` (with close, __close and
** __gc unless given), __index to them, __name `tname`; returns its
** registry ref.  Upvalue 1 of every method is the scheduler.
*/
int tk_io_newmeta(lua_State *L, tt_sched *S, const char *tname,
                  const luaL_Reg *m) {
  luaL_newmetatable(L, tname);
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, m, 1);
  if (lua_getfield(L, -1, "close") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushcfunction(L, l_io_close);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "close");
  }
  lua_setfield(L, -3, "__close");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_io_gc);
  lua_setfield(L, -2, "__gc");
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Push the object's description ("tcp 127.0.0.1:80"). */
void tk_io_push_description(lua_State *L, tt_io *io) {
  if (io == NULL) lua_pushliteral(L, "?");
  else if (io->kind->describe) io->kind->describe(L, io);
  else lua_pushstring(L, io->kind->name);
}

/* Push what task `t` (blocked on an op) waits for: "read on tcp 127.0.0.1:80". */
void tk_io_push_wait(lua_State *L, tt_task *t) {
  tt_op *op = t->op;
  if (op == NULL) {
    lua_pushliteral(L, "I/O");
    return;
  }
  if (op->io == NULL) {
    lua_pushstring(L, op->what);
    return;
  }
  tk_io_push_description(L, op->io);
  lua_pushfstring(L, "%s on %s", op->what, lua_tostring(L, -1));
  lua_remove(L, -2);
}

/* Push one line per open I/O object into the array at `lines`, after the
** heading "open I/O objects: N" (nothing when none is open). */
void tk_io_dump(lua_State *L, tt_sched *S, int lines) {
  tt_io *io = S->ios;
  lua_Integer n;
  if (io == NULL) return;
  lines = lua_absindex(L, lines);
  n = (lua_Integer)lua_rawlen(L, lines);
  lua_pushfstring(L, "\n  open I/O object%s: %d", S->nios == 1 ? "" : "s",
                  S->nios);
  lua_rawseti(L, lines, ++n);
  do {
    tk_io_push_description(L, io);
    lua_pushfstring(L, "\n    %s", lua_tostring(L, -1));
    lua_remove(L, -2);
    lua_rawseti(L, lines, ++n);
    io = io->link.next;
  } while (io != S->ios);
}

/* ---- operations ------------------------------------------------------- */

void ts_op_init(tt_op *op, tt_io *io, const char *what, tt_cancel_fn cancel) {
  memset(op, 0, sizeof *op);
  op->io = io;
  op->what = what;
  op->cancel = cancel;
}

/*
** Block the running task `t` on `op`, which the caller has just started;
** `k` continues the task once ts_op_done was called, with the op as its
** context (lua_KContext).  The caller has checked that `t` is not
** cancelled (a cancelled task must not start one).
*/
int tk_op_await(lua_State *L, tt_task *t, tt_op *op, lua_KFunction k) {
  op->task = t;
  op->done = 0;
  op->cancelling = 0;
  op->result = 0;
  t->op = op;
  if (op->holds_clock) t->S->nholds++;
  /* NOTE: the task holds the object until its continuation has run
     (ts_op_release, from ts_step), so that the continuation may read the
     op even when the object was closed and libuv let go of it meanwhile. */
  if (op->io) op->io->nhold++;
  t->state = TT_T_BLOCKED;
  t->wait = TT_W_IO;
  t->wake_cancel = 0;
  return tk_yield(L, t, k, (lua_KContext)op);
}

/*
** The operation is over (result >= 0, or a libuv error): wake its task.
** Called from libuv callbacks and from cancel actions.  NOTE: a task
** blocked on an op is woken only here, so Cancelled is raised only after
** the callback ran.
*/
void ts_op_done(tt_op *op, intptr_t result) {
  tt_task *t = op->task;
  op->result = result;
  op->done = 1;
  if (t == NULL) return;
  if (op->holds_clock) t->S->nholds--;
  op->task = NULL;
  t->wait = TT_W_NONE;
  t->wake_cancel = op->cancelling;
  ts_ready(t->S, t);
}

/* The task's continuation after `op` has run: drop the task's hold. */
void ts_op_release(tt_op *op) {
  if (op->io) ts_io_unhold(op->io);
}

/* A cancellation reached the task blocked on `op`: take the op back. */
void ts_op_cancel(tt_op *op) {
  if (op->cancelling || op->done) return;
  op->cancelling = 1;
  op->cancel(op);
}

/*
** In a continuation: raise Cancelled when the op was taken back because of
** a cancellation (result UV_ECANCELED after the cancel action).  Returns 0
** otherwise: an op that completed anyway returns its real result, and the
** cancellation comes at the next checkpoint.
*/
int tk_op_cancelled(lua_State *L, tt_op *op) {
  tt_sched *S = TT_UPSCHED(L);
  tt_scope *s;
  if (!op->cancelling || op->result != UV_ECANCELED) return 0;
  s = S->current ? ts_cancelled(S->current) : NULL;
  if (s) return tk_raise_cancelled(L, S, s);
  return 0;
}

static int k_results(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status;
  return (int)ctx;
}

/* Return the `nres` values on top after one turn of the scheduler: the
** yield of an operation that did not have to wait (a checkpoint that never
** raises: what was done stands, a cancellation comes at the next one). */
int tk_yield_results(lua_State *L, int nres) {
  return tk_yield(L, TT_UPSCHED(L)->current, k_results, (lua_KContext)nres);
}

/* ---- errors ----------------------------------------------------------- */

/* The class of error `err` for a connected stream's read or write. */
int ts_errcls(int err) {
  switch (err) {
    case UV_EBADF: return TT_CLS_CLOSED;
    case UV_EBUSY: return TT_CLS_BUSY;
    case UV_EPIPE: case UV_ECONNRESET: case UV_ETIMEDOUT:
    case UV_ECONNABORTED: case UV_ENOTCONN: case UV_EHOSTUNREACH:
    case UV_ENETUNREACH: case UV_ENETDOWN: case UV_EOF:
      return TT_CLS_BROKEN;
    default: return TT_CLS_IO;
  }
}

/* Raise an IOError (class chosen by ts_errcls) for `err` in `op`. */
int tk_raise_ioerror(lua_State *L, tt_sched *S, int err, const char *op,
                     tt_io *io) {
  (void)io;
  tk_new_ioerror(L, S, ts_errcls(err), err, op);
  return lua_error(L);
}

/* Raise ClosedResourceError for operation `op` on a closed object. */
int tk_raise_closed(lua_State *L, tt_sched *S, const char *op) {
  tk_new_ioerror(L, S, TT_CLS_CLOSED, UV_EBADF, op);
  lua_pushliteral(L, "the object was closed");
  lua_setfield(L, -2, "message");
  return lua_error(L);
}

/* ---- the run ---------------------------------------------------------- */

static struct sigaction sigpipe_old;

/* A run begins: a write to a closed peer must raise, not kill. */
void ts_io_run_begin(tt_sched *S) {
  struct sigaction ign;
  memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  sigaction(SIGPIPE, &ign, &sigpipe_old);
  S->sigpipe_old = &sigpipe_old;
}

/* The run ends: close what is open, restore SIGPIPE. */
void ts_io_run_end(tt_sched *S) {
  ts_io_close_all(S);
  if (S->sigpipe_old) sigaction(SIGPIPE, &sigpipe_old, NULL);
  S->sigpipe_old = NULL;
}

/* Register every I/O family. */
void tt_io_open(lua_State *L, tt_sched *S) {
  tt_stream_open(L, S);
}
