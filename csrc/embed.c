/* embed.c - embedding: which loop, tether.launch, unhandled failures, tether.await, luv */
#include <stdio.h>
#include <string.h>

#include "io.h"

/*
** NOTE: luv (>= 1.30) keeps its context in the registry under this string
** key: a full userdata whose first field is the loop (luv_ctx_t in luv.h).
** That field is all tether reads; luv's version and whether its loop runs
** come from luv's own Lua functions (version, loop_mode).
*/
#define LUV_CTX_KEY "luv_context"

/* A tether.await in progress: the operation its task waits on.  The
** userdata's user value 1 holds done's arguments, packed. */
typedef struct tt_await {
  tt_op op;
  uint8_t state;          /* AW_* */
  uint8_t has_cancel;     /* a cancel function was given */
  uint8_t asked;          /* it was called */
} tt_await;

enum {
  AW_STARTING,            /* start(done) runs */
  AW_WAITING,             /* the task waits for done */
  AW_DONE,                /* done was called: its values wait for the task */
  AW_OVER                 /* the await ended: done is ignored */
};

/* l_await's stack while it runs: start, cancel, the userdata, done */
enum { AW_START = 1, AW_CANCEL, AW_UD, AW_DONEFN };

/* ---- static helpers --------------------------------------------------- */

/* Push luv's module table (package.loaded.luv, or .uv as luvit names it);
** returns 0, pushing nothing, when there is none. */
static int tk_push_luv(lua_State *L) {
  static const char *const names[] = {"luv", "uv", NULL};
  int i;
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE) {
    for (i = 0; names[i]; i++) {
      if (lua_getfield(L, -1, names[i]) == LUA_TTABLE) {
        if (lua_getfield(L, -1, "version") == LUA_TFUNCTION) {
          lua_pop(L, 1);
          lua_remove(L, -2);
          return 1;
        }
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return 0;
}

/* __gc of the guard: the Lua state closes. */
static int l_guard_gc(lua_State *L) {
  ts_shutdown(*(tt_sched **)lua_touserdata(L, 1));
  return 0;
}

/*
** NOTE: when the Lua state closes, luv's loop finalizer closes every
** handle on the loop with a callback of its own, and tether's would still
** be there (and luv's callback reads their data as luv's).  Finalizers run
** in the reverse order of their objects' creation, and luv's loop exists
** before the first session on it: a guard made then ends tether's session
** before luv's loop goes.
*/
static void tk_luv_guard(lua_State *L, tt_sched *S) {
  tt_sched **g;
  if (S->guard_ref != LUA_NOREF) return;
  g = lua_newuserdatauv(L, sizeof(tt_sched *), 0);
  *g = S;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_guard_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  S->guard_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Sharing luv's loop: same libuv (else a clear error); is it running? */
static void tk_luv_check(lua_State *L, const char *fname, int *busy) {
  unsigned v, mine = uv_version();
  if (!tk_push_luv(L))
    luaL_error(L, "%s: luv's loop is in this Lua state but luv is not in "
               "package.loaded, so its libuv version cannot be checked",
               fname);
  lua_getfield(L, -1, "version");
  lua_call(L, 0, 1);
  v = (unsigned)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (v != mine)
    luaL_error(L, "%s: luv runs on libuv %d.%d.%d and tether on libuv "
               "%d.%d.%d: they cannot share a loop (build luv and tether "
               "on the same libuv)", fname, (v >> 16) & 0xff,
               (v >> 8) & 0xff, v & 0xff, (mine >> 16) & 0xff,
               (mine >> 8) & 0xff, mine & 0xff);
  if (lua_getfield(L, -1, "loop_mode") == LUA_TFUNCTION) {
    lua_call(L, 0, 1);
    *busy = !lua_isnil(L, -1);
  }
  lua_pop(L, 2);
}

/* Protected: a launched root found deadlocked fails with a deadlock error
** (light userdata 1: the task). */
static int l_deadlock_error(lua_State *L) {
  tt_task *t = lua_touserdata(L, 1);
  tk_push_ref(L, t->S->dump_ref);             /* what every task waited on */
  lua_pushfstring(L, "tether.launch: deadlock: every task is blocked and "
                  "nothing can wake them%s%s",
                  lua_isstring(L, -1) ? ":\n" : "",
                  lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
  tk_new_error(L, t->S, TT_CLS_ERROR, lua_tostring(L, -1));
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "dump");
  if (!lua_checkstack(t->co, 2)) return luaL_error(L, "not enough memory");
  lua_xmove(L, t->co, 1);
  t->outcome = TT_O_FAILED;
  t->nres = 1;
  return 0;
}

/* The default handler: the error (its tree for an ErrorGroup) on stderr.
** Arguments: error, task (or nil), traceback (or nil). */
static int l_print_unhandled(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  const char *name = "?";
  int eg;
  lua_settop(L, 3);
  if (lua_type(L, 2) == LUA_TUSERDATA) lua_getfield(L, 2, "name");
  else lua_pushnil(L);                                        /* 4 */
  if (lua_type(L, 4) == LUA_TSTRING) name = lua_tostring(L, 4);
  tk_push_class(L, S, TT_CLS_ERRORGROUP);                     /* 5 */
  eg = tk_isinstance(L, 1, 5);
  tk_push_safe_tostring(L, 1);                                /* 6 */
  fprintf(stderr, "tether: unhandled error in launched task '%s':\n%s\n",
          name ? name : "?", lua_tostring(L, 6));
  if (!eg && lua_type(L, 3) == LUA_TSTRING)
    fprintf(stderr, "%s\n", lua_tostring(L, 3));
  fflush(stderr);
  return 0;
}

/* Protected: hand the failure of launched root (light userdata 2, handle at
** 1 or nil) to the on_unhandled handler; if that raises, say so and print
** the failure with the default handler. */
static int l_report(lua_State *L) {
  tt_task *t = lua_touserdata(L, 2);
  tt_sched *S = t->S;
  int i;
  lua_settop(L, 2);
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_print_unhandled, 1);                  /* 3 */
  if (!lua_checkstack(t->co, 1)) return luaL_error(L, "not enough memory");
  lua_pushvalue(t->co, -1);
  lua_xmove(t->co, L, 1);                                     /* 4: error */
  lua_pushvalue(L, 1);                                        /* 5: task */
  lua_pushnil(L);                                             /* 6: traceback */
  if (lua_type(L, 1) == LUA_TUSERDATA &&
      lua_getiuservalue(L, 1, TT_UV_ERRTB) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 1);
    if (lua_rawequal(L, -1, 4)) {
      lua_rawgeti(L, -2, 2);
      lua_replace(L, 6);
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 6);
  tk_push_ref(L, S->unhandled_ref);                           /* 7 */
  if (lua_isnil(L, 7)) {
    lua_pushvalue(L, 3);
    lua_replace(L, 7);
  }
  for (i = 4; i <= 6; i++) lua_pushvalue(L, i);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    tk_push_safe_tostring(L, -1);
    fprintf(stderr, "tether: the on_unhandled handler raised: %s\n",
            lua_tostring(L, -1));
    lua_settop(L, 6);
    lua_call(L, 3, 0);                                        /* l_print_unhandled */
  }
  return 0;
}

/* Continuation of tether.await: its values, Cancelled, or the cancel
** function's turn. */
static int aw_results(lua_State *L, tt_await *a) {
  int n, i;
  a->state = AW_OVER;
  lua_getiuservalue(L, AW_UD, 1);
  lua_getfield(L, -1, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n, "too many results");
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  return n;
}

static int k_await(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *t = S->current;
  tt_await *a = lua_touserdata(L, AW_UD);
  tt_scope *s;
  (void)status; (void)ctx;
  if (a->state == AW_DONE) return aw_results(L, a);
  if (a->state == AW_WAITING && a->has_cancel && !a->asked) {
    a->asked = 1;
    lua_settop(L, AW_DONEFN);
    lua_pushcfunction(L, tt_msgh);
    lua_pushvalue(L, AW_CANCEL);
    if (lua_pcall(L, 0, 1, AW_DONEFN + 1) != LUA_OK) {
      a->state = AW_OVER;
      tk_reraise_mark(L, S);
      return lua_error(L);
    }
    if (lua_toboolean(L, -1)) a->state = AW_OVER;
    else if (a->state == AW_DONE) return aw_results(L, a);
    lua_settop(L, AW_DONEFN);
  }
  if (a->state == AW_WAITING)          /* done will come; it is waited for */
    return tk_op_await(L, t, &a->op, k_await);
  a->state = AW_OVER;
  s = ts_cancelled(t);
  if (s) return tk_raise_cancelled(L, S, s);
  return 0;
}

/* The cancel action of an await (a cancellation reached its task): with no
** cancel function the await is over at once; with one, the task calls it. */
static void ts_await_cancel(tt_op *op) {
  tt_await *a = (tt_await *)op;
  if (!a->has_cancel) a->state = AW_OVER;
  ts_op_done(op, UV_ECANCELED);
}

/* ---- core functions --------------------------------------------------- */

/* luv's loop in `L`, or NULL when luv is not loaded. */
uv_loop_t *ts_luv_loop(lua_State *L) {
  uv_loop_t *loop = NULL;
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUV_CTX_KEY) == LUA_TUSERDATA &&
      lua_rawlen(L, -1) >= sizeof(uv_loop_t *))
    loop = *(uv_loop_t **)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return loop;
}

/*
** The loop for a session that begins now: the host's (tether_set_loop),
** else luv's when luv is loaded in `L` (checked to share tether's libuv),
** else the default loop.  Sets *busy when that loop is running now (inside
** luv's uv.run()).
*/
uv_loop_t *tk_pick_loop(lua_State *L, tt_sched *S, const char *fname,
                        int *busy) {
  uv_loop_t *loop;
  *busy = 0;
  if (S->host_loop) return S->host_loop;
  loop = ts_luv_loop(L);
  if (loop == NULL) return uv_default_loop();
  tk_luv_check(L, fname, busy);
  tk_luv_guard(L, S);
  return loop;
}

/*
** Launched root `t` is done (its handle at `hidx` on `L`, or 0).  A root
** found deadlocked fails with a deadlock error; a failure that nobody asked
** for (t:wait, t:result, t:error) goes to the on_unhandled handler, once.
** Never raises: what cannot be reported for lack of memory is said on
** stderr.
*/
void ts_launch_done(tt_sched *S, lua_State *L, tt_task *t, int hidx) {
  (void)S;
  if (t->deadlocked == 2 || (t->deadlocked && t->outcome == TT_O_CANCELLED)) {
    lua_pushcfunction(L, l_deadlock_error);
    lua_pushlightuserdata(L, t);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      lua_pop(L, 1);
      fprintf(stderr, "tether: launched task deadlocked (and not enough "
              "memory to report it)\n");
      return;
    }
  }
  if (t->outcome != TT_O_FAILED || t->observed) return;
  t->observed = 1;
  lua_pushcfunction(L, l_report);
  if (hidx) lua_pushvalue(L, hidx);
  else lua_pushnil(L);
  lua_pushlightuserdata(L, t);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    fprintf(stderr, "tether: a launched task failed (and not enough memory "
            "to report it)\n");
  }
}

/* Make the function at `idx` (nil: the default) the on_unhandled handler. */
void tk_set_unhandled(lua_State *L, tt_sched *S, int idx) {
  int ref = LUA_NOREF;
  if (!lua_isnoneornil(L, idx)) {
    lua_pushvalue(L, idx);
    ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, S->unhandled_ref);
  S->unhandled_ref = ref;
}

/* ---- bindings --------------------------------------------------------- */

/* tether.launch([opts,] main, ...) -> Task  -- opts: name, clock */
int l_launch(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  int clock, nameidx, fidx;
  fidx = tk_root_args(L, "tether.launch", &clock, &nameidx);
  tk_root_start(L, S, fidx, nameidx, TT_ROOT_LAUNCH, clock, "tether.launch");
  return 1;
}

/* tether.on_unhandled(fn | nil) -> the previous handler (nil: the default) */
int l_on_unhandled(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  if (!lua_isnoneornil(L, 1) && !tk_is_callable(L, 1))
    luaL_typeerror(L, 1, "function or nil");
  lua_settop(L, 1);
  tk_push_ref(L, S->unhandled_ref);
  tk_set_unhandled(L, S, 1);
  return 1;
}

/* done(...) -> true when this call counts (the first), false when ignored */
static int l_await_done(lua_State *L) {
  tt_await *a = lua_touserdata(L, lua_upvalueindex(1));
  int n = lua_gettop(L), i, was = a->state;
  if (was != AW_STARTING && was != AW_WAITING) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_createtable(L, n, 1);
  for (i = 1; i <= n; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  lua_setiuservalue(L, -2, 1);
  a->state = AW_DONE;
  if (was == AW_WAITING) ts_op_done(&a->op, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* tether.await(start [, cancel]) -> the values passed to done */
static int l_await(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *t;
  tt_await *a;
  tt_scope *s;
  if (!tk_is_callable(L, AW_START)) luaL_typeerror(L, AW_START, "function");
  if (!lua_isnoneornil(L, AW_CANCEL) && !tk_is_callable(L, AW_CANCEL))
    luaL_typeerror(L, AW_CANCEL, "function or nil");
  lua_settop(L, AW_CANCEL);
  t = tk_current(L, S, "tether.await");
  if ((s = ts_cancelled(t)) != NULL) return tk_raise_cancelled(L, S, s);
  a = lua_newuserdatauv(L, sizeof(tt_await), 1);              /* AW_UD */
  ts_op_init(&a->op, NULL, "tether.await", ts_await_cancel);
  a->op.holds_clock = 1;
  a->state = AW_STARTING;
  a->has_cancel = (uint8_t)!lua_isnil(L, AW_CANCEL);
  a->asked = 0;
  lua_pushvalue(L, AW_UD);
  lua_pushcclosure(L, l_await_done, 1);                       /* AW_DONEFN */
  lua_pushcfunction(L, tt_msgh);
  lua_pushvalue(L, AW_START);
  lua_pushvalue(L, AW_DONEFN);
  if (lua_pcall(L, 1, 0, AW_DONEFN + 1) != LUA_OK) {
    a->state = AW_OVER;
    tk_reraise_mark(L, S);
    return lua_error(L);
  }
  lua_settop(L, AW_DONEFN);
  if (a->state == AW_DONE)            /* done inside start: still one turn */
    return tk_yield(L, t, k_await, 0);
  a->state = AW_WAITING;
  return tk_op_await(L, t, &a->op, k_await);
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg embed_funcs[] = {
  {"launch", l_launch},
  {"on_unhandled", l_on_unhandled},
  {"await", l_await},
  {NULL, NULL}
};

void tt_embed_open(lua_State *L, tt_sched *S) {
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, embed_funcs, 1);
}
