/* task.c - tasks: creation, the coroutine's body, finishing, and the Task handle */
#include <string.h>

#include "internal.h"

#define TASK_MT "tether.Task"

/* ---- static helpers --------------------------------------------------- */

static int tt_task_main(lua_State *co);

#define check_task(L, what) \
  ((tt_task *)tk_checkself(L, TT_UPSCHED(L)->task_mt, TASK_MT, what))

/* Push the name of task `t` whose userdata is at `idx`. */
static void push_name_at(lua_State *L, tt_task *t, int idx) {
  idx = lua_absindex(L, idx);
  switch (lua_getiuservalue(L, idx, TT_UV_NAME)) {
    case LUA_TSTRING: return;
    case LUA_TFUNCTION: {
      lua_Debug ar;
      lua_getinfo(L, ">S", &ar);
      if (ar.what[0] == 'C' || ar.linedefined < 0)
        lua_pushfstring(L, "task#%d", (int)t->id);
      else
        lua_pushfstring(L, "%s:%d", ar.short_src, ar.linedefined);
      break;
    }
    default:
      lua_pop(L, 1);
      lua_pushfstring(L, "task#%d", (int)t->id);
      break;
  }
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, TT_UV_NAME);
}

static const char *state_name(tt_task *t) {
  switch (t->state) {
    case TT_T_READY: return "ready";
    case TT_T_RUNNING: return "running";
    case TT_T_BLOCKED: return "blocked";
    default: break;
  }
  switch (t->outcome) {
    case TT_O_OK: return "done";
    case TT_O_FAILED: return "failed";
    default: return "cancelled";
  }
}

/* Continuation of the task's protected call: the task's last words. */
static int k_task(lua_State *co, int status, lua_KContext ctx) {
  tt_sched *S = lua_touserdata(co, 1);
  tt_task *t = S->current;
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) {
    t->outcome = TT_O_OK;
    return lua_gettop(co) - 2;
  }
  if (ts_cancelled_from(&t->root)) tk_eg_drop_cancelled(co, S, -1);
  t->outcome = tk_task_outcome(co, S, t, -1);
  return 1;
}

/* Push the traceback recorded for the error at `eidx` in task `t` (ud at
** `tidx`), or nil; clears the record (the spawn site stays). */
static void push_traceback(lua_State *L, int tidx, int eidx) {
  tidx = lua_absindex(L, tidx);
  eidx = lua_absindex(L, eidx);
  if (lua_getiuservalue(L, tidx, TT_UV_ERRTB) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 1);
    if (lua_rawequal(L, -1, eidx)) {
      lua_pop(L, 1);
      lua_rawgeti(L, -1, 2);
    } else {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
    lua_rawgeti(L, -2, 3);                 /* the spawn site goes back */
    lua_setiuservalue(L, tidx, TT_UV_ERRTB);
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  lua_pushnil(L);
}

/* Protected: record the failure of task (light userdata 1) in its group. */
static int l_record_failure(lua_State *L) {
  tt_task *t = lua_touserdata(L, 1);
  tt_group *g = t->group;
  tk_push_task(L, t);                     /* 2: task */
  lua_pushvalue(t->co, -1);
  lua_xmove(t->co, L, 1);                 /* 3: error */
  push_traceback(L, 2, 3);                /* 4: traceback */
  push_name_at(L, t, 2);                  /* 5: name */
  tk_group_record_task(L, g, 3, 4, 5, t);
  if (!g->supervisor) tk_group_fail(L, g, 5);
  return 0;
}

/* ---- core functions --------------------------------------------------- */

/*
** Create a task that will call the function at `fidx` with the `nargs`
** values above it, and push its userdata.  The task is anchored in the
** registry until it finishes; its root scope has no parent yet and the
** caller links it where it belongs, then makes it ready.
*/
tt_task *tk_task_new(lua_State *L, tt_sched *S, int fidx, int nargs) {
  tt_task *t;
  lua_State *co;
  int i;
  fidx = lua_absindex(L, fidx);
  t = lua_newuserdatauv(L, sizeof(tt_task), TT_TASK_NUV);
  memset(t, 0, sizeof *t);
  ts_scope_init(&t->root, TT_SCOPE_TASK);
  t->root.owner = t;
  t->root.active = t->root.used = 1;
  t->timer.index = -1;
  t->timer.kind = TT_TIMER_SLEEP;
  t->S = S;
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->task_mt);
  lua_setmetatable(L, -2);
  co = lua_newthread(L);
  lua_setiuservalue(L, -2, TT_UV_CO);
  t->co = co;
  if (nargs > LUA_MINSTACK - 4)        /* a new thread has LUA_MINSTACK free */
    luaL_checkstack(co, nargs + 4, "too many arguments");
  lua_pushcfunction(co, tt_task_main);
  lua_pushlightuserdata(co, S);
  luaL_checkstack(L, nargs + 2, "too many arguments");
  for (i = 0; i <= nargs; i++) lua_pushvalue(L, fidx + i);
  lua_xmove(L, co, nargs + 1);
  t->nres = nargs + 2; /* what the first resume passes to tt_task_main */
  tk_push_ref(L, S->anchor_ref);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, S->nanchor + 1);  /* may raise: count it only after */
  lua_pop(L, 1);
  t->slot = ++S->nanchor;
  if (S->nanchor > S->anchor_peak) S->anchor_peak = S->nanchor;
  ts_task_set_scope(t, &t->root);
  t->id = ++S->next_id;
  S->ntasks++;
  return t;
}

/* Push the userdata of a live task. */
void tk_push_task(lua_State *L, tt_task *t) {
  tk_push_ref(L, t->S->anchor_ref);
  lua_rawgeti(L, -1, t->slot);
  lua_remove(L, -2);
}

/*
** Drop the anchor of task `t`: the last entry of the anchor array moves
** into its slot, so the array holds exactly the live tasks.  Never
** allocates (storing into existing slots, or nil).
*/
void ts_task_unanchor(lua_State *L, tt_task *t) {
  tt_sched *S = t->S;
  if (t->slot == 0) return;
  tk_push_ref(L, S->anchor_ref);
  if (t->slot != S->nanchor) {
    lua_rawgeti(L, -1, S->nanchor);
    ((tt_task *)lua_touserdata(L, -1))->slot = t->slot;
    lua_rawseti(L, -2, t->slot);
  }
  lua_pushnil(L);
  lua_rawseti(L, -2, S->nanchor--);
  lua_pop(L, 1);
  t->slot = 0;
}

/* Protected: rebuild the anchor array at its live size (a Lua table's
** array part never shrinks by itself). */
static int l_anchor_compact(lua_State *L) {
  tt_sched *S = lua_touserdata(L, 1);
  int i;
  tk_push_ref(L, S->anchor_ref);
  lua_createtable(L, S->nanchor, 0);
  for (i = 1; i <= S->nanchor; i++) {
    lua_rawgeti(L, -2, i);
    lua_rawseti(L, -2, i);
  }
  lua_rawseti(L, LUA_REGISTRYINDEX, S->anchor_ref);
  S->anchor_peak = S->nanchor;
  return 0;
}

/* Push the name of a live task. */
void tk_push_task_name(lua_State *L, tt_task *t) {
  tk_push_task(L, t);
  push_name_at(L, t, -1);
  lua_remove(L, -2);
}

/*
** Remember where the task whose userdata is on top of the stack was
** spawned: the innermost Lua frame of `L` above the spawning C function
** (for gather and first, the user's call).  Keeps that frame's function
** (for its source, looked up when needed) and the current line.
*/
void tk_task_mark_spawn(lua_State *L, tt_task *t) {
  lua_Debug ar;
  int level;
  for (level = 1; level < 8 && lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "fl", &ar);
    if (ar.currentline > 0) {
      t->spawn_line = ar.currentline;
      lua_setiuservalue(L, -2, TT_UV_ERRTB);
      return;
    }
    lua_pop(L, 1);
  }
}

/*
** Set the fields spawned_at ("file.lua:12", where known) and parents (the
** names of the tasks whose groups hold `t`, nearest first, up to the root)
** on the table on top of the stack, for an ErrorGroup's info.
*/
void tk_set_task_origin(lua_State *L, tt_task *t) {
  int info = lua_gettop(L), n = 0;
  tt_task *p;
  if (t->spawn_line > 0 && t->slot) {
    lua_Debug ar;
    tk_push_task(L, t);
    if (lua_getiuservalue(L, -1, TT_UV_ERRTB) == LUA_TTABLE)
      lua_rawgeti(L, -1, 3);               /* under a recorded traceback */
    lua_getinfo(L, ">S", &ar);
    lua_pushfstring(L, "%s:%d", ar.short_src, t->spawn_line);
    lua_setfield(L, info, "spawned_at");
    lua_settop(L, info);
  }
  lua_newtable(L);
  for (p = t->group ? t->group->scope.owner : NULL; p != NULL && p->slot;
       p = p->group ? p->group->scope.owner : NULL) {
    tk_push_task_name(L, p);
    lua_rawseti(L, -2, ++n);
    if (n > 1000) break;
  }
  lua_setfield(L, info, "parents");
}

const char *ts_wait_name(int wait) {
  switch (wait) {
    case TT_W_SLEEP: return "sleep";
    case TT_W_TASK: return "t:wait";
    case TT_W_JOIN: return "with_group (waiting for its tasks)";
    case TT_W_START: return "g:start";
    case TT_W_LIMIT: return "g:spawn (waiting for a free slot)";
    case TT_W_IO: return "I/O";
    default: return "nothing";
  }
}

/*
** The body of every task coroutine: call the task's function under a
** protected call whose continuation (k_task) runs inside the coroutine, so
** that pcall handlers and <close> variables may block while an error or a
** cancellation unwinds, and tt_msgh sees the stack where the error happened.
** Stack on entry: scheduler (light userdata), function, arguments.
*/
static int tt_task_main(lua_State *co) {
  int n = lua_gettop(co);
  lua_pushcfunction(co, tt_msgh);
  lua_insert(co, 2);
  return k_task(co, lua_pcallk(co, n - 2, LUA_MULTRET, 2, 0, k_task), 0);
}

/*
** Push the traceback of the error being handled, for l_capture_traceback
** (level 0) under tt_msgh (level 1).  NOTE: it starts at the function that
** raised (level 2) when that is a Lua function (a runtime error: the
** faulting line), and at its caller when it is a C function (error, assert,
** a bad argument); the C frames at the bottom of a task ("[C]: in ?": the
** task's body, gather's runner) say nothing and are left out.
*/
static void push_task_traceback(lua_State *L) {
  lua_Debug ar;
  const char *tb, *end;
  size_t len;
  static const char tail[] = "\n\t[C]: in ?";
  int level = 2;
  if (lua_getstack(L, 2, &ar) && lua_getinfo(L, "S", &ar) && ar.what[0] == 'C')
    level = 3;
  luaL_traceback(L, L, NULL, level);
  tb = lua_tolstring(L, -1, &len);
  end = tb + len;
  while ((size_t)(end - tb) >= sizeof tail - 1 &&
         memcmp(end - (sizeof tail - 1), tail, sizeof tail - 1) == 0)
    end -= sizeof tail - 1;
  if ((size_t)(end - tb) != len) {
    lua_pushlstring(L, tb, (size_t)(end - tb));
    lua_remove(L, -2);
  }
}

/* Protected, for tt_msgh: record in task 2 the traceback of error 1. */
static int l_capture_traceback(lua_State *L) {
  tt_task *t = lua_touserdata(L, 2);
  lua_settop(L, 1);
  tk_push_task(L, t);                                      /* 2 */
  if (t->reraise) {
    t->reraise = 0;
    if (lua_getiuservalue(L, 2, TT_UV_ERRTB) == LUA_TTABLE &&
        lua_rawgeti(L, -1, 1) >= 0 && lua_rawequal(L, -1, 1))
      return 0;
    lua_settop(L, 2);
  }
  lua_createtable(L, 3, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  push_task_traceback(L);
  lua_rawseti(L, -2, 2);
  if (lua_getiuservalue(L, 2, TT_UV_ERRTB) == LUA_TTABLE) /* the spawn site */
    lua_rawgeti(L, -1, 3);
  lua_rawseti(L, 3, 3);
  lua_settop(L, 3);
  lua_setiuservalue(L, 2, TT_UV_ERRTB);
  return 0;
}

/*
** Message handler of tether's protected calls: keeps the error value
** unchanged and records, in the running task, the traceback where it was
** raised (not for cancellations, which are not reported).
*/
int tt_msgh(lua_State *L) {
  tt_sched *S;
  tt_task *t;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tt_sched_key);
  S = lua_touserdata(L, -1);
  lua_pop(L, 1);
  t = S ? S->current : NULL;
  if (t == NULL || tk_is_cancelled(L, S, 1)) {
    lua_settop(L, 1);
    return 1;
  }
  /* NOTE: a message handler that raises replaces the error it handles (a
     memory error would lose a whole ErrorGroup): capture, protected. */
  lua_pushcfunction(L, l_capture_traceback);
  lua_pushvalue(L, 1);
  lua_pushlightuserdata(L, t);
  lua_pcall(L, 2, 0, 0);
  lua_settop(L, 1);
  return 1;
}

/*
** The outcome of task `t` that ends with the error at `idx`: CANCELLED for
** a Cancelled while one of the task's scopes is cancelled; FAILED for
** anything else, a stale Cancelled (re-raised after its scope was left)
** included, so that it is reported (contract 3).
*/
int tk_task_outcome(lua_State *L, tt_sched *S, tt_task *t, int idx) {
  if (tk_is_cancelled(L, S, idx) && ts_cancelled_from(&t->root))
    return TT_O_CANCELLED;
  return TT_O_FAILED;
}

/* Our own code re-raises an error: keep the traceback of where it began. */
void tk_reraise_mark(lua_State *L, tt_sched *S) {
  (void)L;
  if (S->current) S->current->reraise = 1;
}

/* Push the traceback recorded for the error at `eidx` in the running task. */
void tk_push_current_traceback(lua_State *L, tt_sched *S, int eidx) {
  eidx = lua_absindex(L, eidx);
  tk_push_task(L, S->current);
  push_traceback(L, -1, eidx);
  lua_remove(L, -2);
}

/*
** Task `t` has finished (its outcome is set, its results or error are on
** its coroutine).  Record a failure in its group, take it out of the scope
** tree, wake who waits for it, and drop its anchor.  `L` is the thread
** running the scheduler; only the failure record allocates, and it runs
** protected.
*/
void ts_task_finished(tt_sched *S, lua_State *L, tt_task *t) {
  tt_group *g = t->group;
  t->state = TT_T_DONE;
  if (t->outcome == TT_O_FAILED && g && !t->starting) {
    lua_pushcfunction(L, l_record_failure);
    lua_pushlightuserdata(L, t);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      lua_pop(L, 1);
      g->lost_error = 1;
      if (!g->supervisor) ts_cancel(S, &g->scope, TT_REASON_NONE);
    }
  }
  ts_task_set_scope(t, NULL);
  if (t->root.parent) TT_LIST_REMOVE(t->root.parent->children, &t->root, link);
  t->root.parent = NULL;
  t->root.active = 0;
  ts_scope_release(L, &t->root);
  while (t->waiters) ts_wake(t->waiters, 0);   /* a g:start's caller too */
  if (g) ts_group_child_done(S, t);
  t->group = NULL;
  ts_task_unanchor(L, t);
  S->ntasks--;
  if (S->anchor_peak > 1024 && S->nanchor < S->anchor_peak / 4) {
    lua_pushcfunction(L, l_anchor_compact);
    lua_pushlightuserdata(L, S);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1); /* retried later */
  }
}

/* ---- bindings --------------------------------------------------------- */

/* t:done() -> boolean */
static int l_task_done(lua_State *L) {
  lua_pushboolean(L, check_task(L, "t:done")->state == TT_T_DONE);
  return 1;
}

/* t:cancelled() -> boolean */
static int l_task_cancelled(lua_State *L) {
  lua_pushboolean(L, check_task(L, "t:cancelled")->outcome == TT_O_CANCELLED);
  return 1;
}

/* t:failed() -> boolean */
static int l_task_failed(lua_State *L) {
  lua_pushboolean(L, check_task(L, "t:failed")->outcome == TT_O_FAILED);
  return 1;
}

/* t:result() -> the task's return values; raises unless it succeeded */
static int l_task_result(lua_State *L) {
  tt_task *t = check_task(L, "t:result");
  int i, top;
  t->observed = 1;
  if (t->state != TT_T_DONE) {
    push_name_at(L, t, 1);
    return luaL_error(L, "t:result: task '%s' is not finished",
                      lua_tostring(L, -1));
  }
  if (t->outcome != TT_O_OK) {
    tt_sched *S = TT_UPSCHED(L);
    push_name_at(L, t, 1);                                  /* name */
    lua_pushvalue(t->co, -1);
    lua_xmove(t->co, L, 1);                                 /* error */
    if (t->outcome == TT_O_CANCELLED) {
      lua_pushfstring(L, "t:result: task '%s' was cancelled",
                      lua_tostring(L, -2));
    } else {
      tk_push_safe_tostring(L, -1);
      lua_pushfstring(L, "t:result: task '%s' failed: %s",
                      lua_tostring(L, -3), lua_tostring(L, -1));
      lua_remove(L, -2);
    }
    tk_new_error(L, S, TT_CLS_ERROR, lua_tostring(L, -1));
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "cause");
    return lua_error(L);
  }
  luaL_checkstack(L, t->nres, "too many results");
  lua_checkstack(t->co, 1);
  top = lua_gettop(t->co);
  for (i = top - t->nres + 1; i <= top; i++) {
    lua_pushvalue(t->co, i);
    lua_xmove(t->co, L, 1);
  }
  return t->nres;
}

/* t:error() -> the error value of a failed or cancelled task, else nil */
static int l_task_error(lua_State *L) {
  tt_task *t = check_task(L, "t:error");
  t->observed = 1;
  if (t->state != TT_T_DONE || t->outcome == TT_O_OK) return 0;
  lua_pushvalue(t->co, -1);
  lua_xmove(t->co, L, 1);
  return 1;
}

/* t:wait()  -- blocks until t finishes; never raises t's error */
static int l_task_wait(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *t = check_task(L, "t:wait");
  tt_task *cur = tk_current(L, S, "t:wait");
  t->observed = 1;
  if (t == cur) return luaL_error(L, "t:wait: a task cannot wait for itself");
  if (t->state == TT_T_DONE || ts_cancelled(cur))
    return tk_yield(L, cur, tk_checkpoint_k, 0);
  TT_LIST_APPEND(t->waiters, cur, wlink);
  cur->wlist = &t->waiters;
  return tk_block(L, cur, TT_W_TASK, tk_cancellable_k);
}

/* t:cancel([reason])  -- cancels that one task; its group is not failed */
static int l_task_cancel(lua_State *L) {
  tt_task *t = check_task(L, "t:cancel");
  if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TSTRING) {
    lua_pushfstring(L, "reason: string or nil expected, got %s",
                    luaL_typename(L, 2));
    tk_argerror(L, 1, "t:cancel", lua_tostring(L, -1));
  }
  if (t->state != TT_T_DONE) tk_cancel_reason(L, t->S, &t->root, 2);
  return 0;
}

/* t.name, t.id, and the methods */
static int l_task_index(lua_State *L) {
  tt_task *t;
  const char *k;
  lua_pushvalue(L, 2);                      /* methods first: the hot path */
  if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) return 1;
  t = check_task(L, "Task");                /* the method checks its self */
  k = lua_tostring(L, 2);
  if (k && strcmp(k, "name") == 0) {
    push_name_at(L, t, 1);
    return 1;
  }
  if (k && strcmp(k, "id") == 0) {
    lua_pushinteger(L, t->id);
    return 1;
  }
  return 0;
}

static int l_task_tostring(lua_State *L) {
  tt_task *t = check_task(L, "Task");
  push_name_at(L, t, 1);
  lua_pushfstring(L, "tether.Task '%s' (%s)", lua_tostring(L, -1),
                  state_name(t));
  return 1;
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg task_methods[] = {
  {"done", l_task_done},
  {"cancelled", l_task_cancelled},
  {"failed", l_task_failed},
  {"result", l_task_result},
  {"error", l_task_error},
  {"wait", l_task_wait},
  {"cancel", l_task_cancel},
  {NULL, NULL}
};

static const luaL_Reg task_meta[] = {
  {"__tostring", l_task_tostring},
  {NULL, NULL}
};

void tt_task_open(lua_State *L, tt_sched *S) {
  luaL_newmetatable(L, TASK_MT);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, task_meta, 1);
  lua_pushlightuserdata(L, S);
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, task_methods, 1);
  lua_pushcclosure(L, l_task_index, 2);
  lua_setfield(L, -2, "__index");
  S->task_mt = luaL_ref(L, LUA_REGISTRYINDEX);
}
