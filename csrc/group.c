/* group.c - task groups: with_group, spawn, start, limits, daemons, and the join */
#include <string.h>

#include "internal.h"

#define GROUP_MT "tether.TaskGroup"

/* ---- static helpers --------------------------------------------------- */

#define check_group(L, what) \
  ((tt_group *)tk_checkself(L, TT_UPSCHED(L)->group_mt, GROUP_MT, what))

static void unref(lua_State *L, int *ref) {
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

/* Cancel the daemon tasks of `g`: its main work is done. */
static void ts_cancel_daemons(tt_sched *S, tt_group *g) {
  tt_task *c = g->children;
  g->daemons_cancelled = 1;
  if (c == NULL) return;
  do {
    tt_task *next = c->glink.next;
    if (c->daemon) ts_cancel(S, &c->root, TT_REASON_DAEMON);
    c = next;
  } while (c != g->children);
}

static const char *const spawn_keys[] = { "name", "daemon", NULL };

/* Options of spawn/start (`op` names the method, as "g:spawn"): the index of
** the function, the daemon flag, and the index of the options (0: none). */
static int spawn_args(lua_State *L, const char *op, int *daemon, int *nameidx) {
  int fidx = 2;
  *daemon = 0;
  *nameidx = 0;
  if (lua_istable(L, 2) && !tk_is_callable(L, 2)) {
    int ty;
    tk_check_opts(L, 2, op, spawn_keys);
    ty = lua_getfield(L, 2, "name");
    lua_pop(L, 1);
    if (ty != LUA_TNIL && ty != LUA_TSTRING)
      tk_argerror(L, 1, op, "option 'name': string expected");
    if (ty == LUA_TSTRING) *nameidx = 2;
    *daemon = tk_opt_bool(L, 2, "daemon", 0, op);
    fidx = 3;
  }
  if (!tk_is_callable(L, fidx)) {
    lua_pushfstring(L, "function expected, got %s", luaL_typename(L, fidx));
    tk_argerror(L, fidx - 1, op, lua_tostring(L, -1));
  }
  return fidx;
}

/* ---- core functions --------------------------------------------------- */

/*
** Make the ErrorGroup that `g` will raise, with empty errors and infos that
** records then fill: NOTE: built at the first error, so that raising it at
** the group's exit allocates nothing and cannot lose a recorded error.
*/
static void tk_group_make_eg(lua_State *L, tt_group *g) {
  int errs, infos;
  lua_createtable(L, 4, 1);
  errs = lua_gettop(L);
  lua_pushinteger(L, 0);
  lua_setfield(L, errs, "n");
  lua_createtable(L, 4, 0);
  infos = lua_gettop(L);
  tk_push_ref(L, g->name_ref);
  lua_pushfstring(L, "errors in task group '%s'", lua_tostring(L, -1));
  tk_new_errorgroup(L, g->S, lua_tostring(L, -1), errs, infos);
  g->eg_ref = luaL_ref(L, LUA_REGISTRYINDEX);      /* the refs are taken */
  lua_pushvalue(L, infos);                         /* last: each may raise */
  g->infos_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, errs);
  g->errors_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, errs - 1);
}

/* Protected: record the error at 1 (traceback 2, name 3) in group 4. */
static int l_group_record(lua_State *L) {
  tk_group_record(L, lua_touserdata(L, 4), 1, 2, 3);
  return 0;
}

/* Protected: add a note that an error was lost for memory to group 1. */
static int l_group_note_lost(lua_State *L) {
  tt_group *g = lua_touserdata(L, 1);
  lua_settop(L, 0);
  lua_pushliteral(L, "not enough memory (an error of this task group could "
                  "not be recorded)");
  lua_pushnil(L);
  lua_pushliteral(L, "?");
  lua_pushlightuserdata(L, g);
  return l_group_record(L);
}

/*
** Record error `eidx` (traceback at `tbidx`, task name at `nameidx`) in
** group `g`, in the order errors are raised.
*/
void tk_group_record(lua_State *L, tt_group *g, int eidx, int tbidx,
                     int nameidx) {
  tk_group_record_task(L, g, eidx, tbidx, nameidx, NULL);
}

/* The same, for an error of task `t` (NULL: none): its info also says
** where it was spawned and by whom (tk_set_task_origin). */
void tk_group_record_task(lua_State *L, tt_group *g, int eidx, int tbidx,
                          int nameidx, tt_task *t) {
  int n = g->nerr + 1;
  eidx = lua_absindex(L, eidx);
  tbidx = lua_absindex(L, tbidx);
  nameidx = lua_absindex(L, nameidx);
  if (g->eg_ref == LUA_NOREF) tk_group_make_eg(L, g);
  tk_push_ref(L, g->infos_ref);
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, nameidx);
  lua_setfield(L, -2, "task");
  lua_pushvalue(L, tbidx);
  lua_setfield(L, -2, "traceback");
  if (t) tk_set_task_origin(L, t);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
  tk_push_ref(L, g->errors_ref);
  lua_pushvalue(L, eidx);
  lua_rawseti(L, -2, n);
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  lua_pop(L, 1);
  g->nerr = n;
}

/* A task of `g` (named at `nameidx`) failed: cancel the rest of the group. */
void tk_group_fail(lua_State *L, tt_group *g, int nameidx) {
  if (g->scope.cancel_called) return;
  lua_pushvalue(L, nameidx);
  g->scope.source_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  ts_cancel(g->S, &g->scope, TT_REASON_FAILED);
}

/*
** Child `t` of its group has finished: hand its slot to a waiting spawner,
** and wake the body's task if it waits for the group to empty (or for the
** main work to end, to cancel the daemons).
*/
void ts_group_child_done(tt_sched *S, tt_task *t) {
  tt_group *g = t->group;
  tt_task *o = g->scope.owner;
  (void)S;
  TT_LIST_REMOVE(g->children, t, glink);
  g->nlive--;
  if (!t->daemon) g->nwork--;
  if (g->limit && g->lwaiters && g->nwork + g->nreserved < g->limit) {
    tt_task *w = g->lwaiters;
    w->granted = 1;
    g->nreserved++;
    ts_wake(w, 0);
  }
  if (g->body_done && o->state == TT_T_BLOCKED && o->wait == TT_W_JOIN &&
      o->scope == &g->scope &&
      (g->nlive + g->nreserved == 0 ||
       (g->nwork == 0 && !g->daemons_cancelled)))
    ts_wake(o, 0);
}

/*
** Create a child task of `g` for the function at `fidx` (with the values
** above it as arguments) and push its handle; it runs on a later tick.
** `parent` is the scope it runs under (the group's, or the caller's while a
** g:start waits).  Never blocks.
*/
static tt_task *tk_group_add(lua_State *L, tt_sched *S, tt_group *g, int fidx,
                             int nameidx, int daemon, tt_scope *parent) {
  tt_task *t = tk_task_new(L, S, fidx, lua_gettop(L) - fidx);
  lua_pushvalue(L, nameidx ? nameidx : fidx);
  if (nameidx) {
    lua_getfield(L, -1, "name");
    lua_remove(L, -2);
  }
  lua_setiuservalue(L, -2, TT_UV_NAME);
  tk_task_mark_spawn(L, t);
  t->daemon = (uint8_t)daemon;
  t->group = g;
  t->root.parent = parent;
  TT_LIST_APPEND(parent->children, &t->root, link);
  TT_LIST_APPEND(g->children, t, glink);
  g->nlive++;
  if (!daemon) g->nwork++;
  if (daemon && g->daemons_cancelled) ts_cancel(S, &t->root, TT_REASON_DAEMON);
  ts_ready(S, t);
  return t;
}

tt_task *tk_group_spawn(lua_State *L, tt_group *g, int fidx) {
  return tk_group_add(L, g->S, g, fidx, 0, 0, &g->scope);
}

/* ---- with_group -------------------------------------------------------- */

/*
** The group has closed: raise what it recorded, or an enclosing scope's
** Cancelled, or return the body's results.  NOTE: as in Trio and AnyIO,
** closing a group is a cancel point only when the join had to wait for
** children (or the body itself was interrupted by that Cancelled).
*/
static int k_group_closed(lua_State *L, int status, lua_KContext ctx) {
  tt_group *g = lua_touserdata(L, 2);
  tt_sched *S = g->S;
  tt_task *t = S->current;
  tt_scope *s;
  (void)status; (void)ctx;
  if (g->nerr > 0 || g->lost_error) {
    lua_settop(L, 2);
    if (g->lost_error) {
      lua_pushcfunction(L, l_group_note_lost);
      lua_pushlightuserdata(L, g);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK && g->eg_ref == LUA_NOREF)
        return lua_error(L);              /* nothing recorded: the memory error */
      lua_settop(L, 2);
    }
    tk_push_ref(L, g->eg_ref);
    unref(L, &g->eg_ref);
    unref(L, &g->errors_ref);
    unref(L, &g->infos_ref);
    return lua_error(L);
  }
  if ((g->waited || g->body_cancelled) && (s = ts_cancelled(t)) != NULL)
    return tk_raise_cancelled(L, S, s);
  return g->body_returned ? lua_gettop(L) - 3 : 0;
}

/* Stack of with_group while it runs: 1 body, 2 group, 3 msgh, 4.. results */
static int k_group_join(lua_State *L, int status, lua_KContext ctx) {
  tt_group *g = lua_touserdata(L, 2);
  tt_sched *S = g->S;
  tt_task *t = S->current;
  (void)status; (void)ctx;
  if (g->nwork == 0 && g->nlive > 0 && !g->daemons_cancelled)
    ts_cancel_daemons(S, g);
  if (g->nlive + g->nreserved > 0) {
    g->state = TT_G_JOINING;
    g->waited = 1;
    return tk_block(L, t, TT_W_JOIN, k_group_join);
  }
  if (!g->waited && !g->yielded) {    /* the exit yields once, still open: */
    g->yielded = 1;                   /* a task spawned meanwhile is waited for */
    g->state = TT_G_JOINING;
    return tk_yield(L, t, k_group_join, 0);
  }
  ts_scope_exit(S, t, &g->scope);
  ts_scope_release(L, &g->scope);
  g->state = TT_G_CLOSED;
  return k_group_closed(L, LUA_OK, 0);
}

/* Protected: the body's error at 1 goes into group 2, which it fails. */
static int l_group_body_failed(lua_State *L) {
  tt_group *g = lua_touserdata(L, 2);
  tk_push_current_traceback(L, g->S, 1);
  tk_push_task_name(L, g->S->current);
  tk_group_record_task(L, g, 1, 3, 4, g->S->current);
  tk_group_fail(L, g, 4);
  return 0;
}

static int k_group_body(lua_State *L, int status, lua_KContext ctx) {
  tt_group *g = lua_touserdata(L, 2);
  tt_sched *S = g->S;
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) {
    g->body_returned = 1;
  } else {
    int live = 0;                         /* stack: ..., 4 error */
    if (ts_cancelled(S->current)) {
      /* the group's own Cancelled, out of an ErrorGroup too */
      if (ts_cancelled_from(&g->scope) == &g->scope)
        tk_eg_drop_cancelled(L, S, -1);
      live = tk_is_cancelled(L, S, -1);
    }
    g->body_cancelled = (uint8_t)live;
    if (!live) {                          /* a stale Cancelled is an error */
      lua_pushcfunction(L, l_group_body_failed);
      lua_insert(L, 4);
      lua_pushlightuserdata(L, g);
      if (lua_pcall(L, 2, 0, 0) != LUA_OK) { /* no memory: keep going */
        g->lost_error = 1;
        ts_cancel(S, &g->scope, TT_REASON_NONE);
      }
    }
    lua_settop(L, 3);
  }
  g->body_done = 1;
  return k_group_join(L, LUA_OK, 0);
}

static const char *const group_keys[] = { "name", "limit", "policy", NULL };

/* tether.with_group([opts,] body) -> body's results */
int l_with_group(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *t;
  tt_group *g;
  int limit = 0, supervisor = 0, bidx = 1;
  const char *fname = "tether.with_group";
  if (lua_istable(L, 1) && !tk_is_callable(L, 1)) {
    int ty;
    bidx = 2;
    tk_check_opts(L, 1, fname, group_keys);
    ty = lua_getfield(L, 1, "limit");
    if (ty != LUA_TNIL) {
      lua_Integer n;
      int isint;
      n = lua_tointegerx(L, -1, &isint);
      if (ty != LUA_TNUMBER || !isint || n < 1 || n > 0x7fffffff)
        tk_argerror(L, 1, fname, "option 'limit': positive integer expected");
      limit = (int)n;
    }
    ty = lua_getfield(L, 1, "policy");
    if (ty != LUA_TNIL) {
      const char *p = lua_tostring(L, -1);
      if (ty != LUA_TSTRING ||
          (strcmp(p, "supervisor") != 0 && strcmp(p, "strict") != 0))
        tk_argerror(L, 1, fname,
                    "option 'policy': \"strict\" or \"supervisor\" expected");
      supervisor = p[0] == 's' && p[1] == 'u';
    }
    ty = lua_getfield(L, 1, "name");
    if (ty != LUA_TNIL && ty != LUA_TSTRING)
      tk_argerror(L, 1, fname, "option 'name': string expected");
    lua_pop(L, 3);
  }
  if (!tk_is_callable(L, bidx)) {
    lua_pushfstring(L, "%s expected, got %s",
                    bidx == 1 ? "options table or function" : "function",
                    luaL_typename(L, bidx));
    tk_argerror(L, bidx, fname, lua_tostring(L, -1));
  }
  if (!lua_isnone(L, bidx + 1)) {
    lua_pushfstring(L, "no argument expected after the body, got %s%s",
                    luaL_typename(L, bidx + 1),
                    lua_istable(L, bidx + 1) && bidx == 1
                        ? " (options go first: with_group(opts, body))" : "");
    tk_argerror(L, bidx + 1, fname, lua_tostring(L, -1));
  }
  t = tk_current(L, S, "tether.with_group");
  lua_settop(L, bidx);
  if (bidx == 2) {                  /* the name, then drop opts */
    lua_getfield(L, 1, "name");
    lua_remove(L, 1);
  } else {
    lua_pushnil(L);
  }
  if (lua_isnil(L, -1)) {           /* name it after the body */
    lua_Debug ar;
    lua_pop(L, 1);
    lua_pushvalue(L, 1);
    lua_getinfo(L, ">S", &ar);
    if (ar.what[0] == 'C') lua_pushliteral(L, "group");
    else lua_pushfstring(L, "%s:%d", ar.short_src, ar.linedefined);
  }
  g = lua_newuserdatauv(L, sizeof(tt_group), 0);
  memset(g, 0, sizeof *g);
  ts_scope_init(&g->scope, TT_SCOPE_GROUP);
  g->S = S;
  g->limit = limit;
  g->supervisor = (uint8_t)supervisor;
  g->errors_ref = g->infos_ref = g->eg_ref = g->name_ref = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->group_mt);
  lua_setmetatable(L, -2);
  lua_insert(L, 2);
  g->name_ref = luaL_ref(L, LUA_REGISTRYINDEX);   /* stack: body, group */
  tk_scope_enter(L, t, &g->scope);
  lua_pushcfunction(L, tt_msgh);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  return k_group_body(L, lua_pcallk(L, 1, LUA_MULTRET, 3, 0, k_group_body),
                      0);
}

/* ---- spawn and start -------------------------------------------------- */

static int tk_spawn(lua_State *L, int start, int granted);

/* Continuation of a spawn that waited for a slot under the limit. */
static int k_spawn_slot(lua_State *L, int status, lua_KContext start) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *cur = S->current;
  tt_group *g = lua_touserdata(L, 1);
  (void)status;
  if (cur->granted) {
    cur->granted = 0;
    g->nreserved--;
    return tk_spawn(L, (int)start, 1);
  }
  if (ts_cancelled(cur)) return tk_raise_cancelled(L, S, ts_cancelled(cur));
  return tk_spawn(L, (int)start, 0);
}

static int k_start(lua_State *L, int status, lua_KContext ctx);

/*
** Block the running task `cur` in g:start until task `c` calls started()
** or finishes: it waits on c's waiters (woken with them when c finishes).
** `fidx` is where the started closure is on its stack (k_start finds the
** value given to started() in its third upvalue).
*/
static int tk_block_start(lua_State *L, tt_task *cur, tt_task *c, int fidx) {
  TT_LIST_APPEND(c->waiters, cur, wlink);
  cur->wlist = &c->waiters;
  cur->state = TT_T_BLOCKED;
  cur->wait = TT_W_START;
  cur->wake_cancel = 0;
  return tk_yield(L, cur, k_start, fidx);
}

/* Continuation of g:start: the task called started() or finished. */
static int k_start(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *c = lua_touserdata(L, -1);
  (void)status;
  if (!c->starting) {
    tt_scope *s = ts_cancelled(S->current);
    lua_getupvalue(L, (int)ctx, 3);        /* the value given to started() */
    lua_pushnil(L);
    lua_setupvalue(L, (int)ctx, 3);
    if (s) return tk_raise_cancelled(L, S, s); /* a checkpoint (contract 2) */
    return 1;
  }
  if (c->state != TT_T_DONE)
    return tk_block_start(L, S->current, c, (int)ctx);
  c->starting = 0;
  if (c->outcome == TT_O_FAILED) {
    lua_pushvalue(c->co, -1);
    lua_xmove(c->co, L, 1);
    return lua_error(L);
  }
  if (c->outcome == TT_O_CANCELLED) {
    tt_scope *s = ts_cancelled(S->current);
    if (s) return tk_raise_cancelled(L, S, s);
  }
  lua_getfield(L, -1, "name");
  return luaL_error(L, "g:start: task '%s' %s without calling started()",
                    lua_tostring(L, -1),
                    c->outcome == TT_O_OK ? "finished" : "was cancelled");
}

/* started([value])  -- given to a task run by g:start */
static int l_started(lua_State *L) {
  tt_task *c = lua_touserdata(L, lua_upvalueindex(2));
  if (!c->starting || c->state == TT_T_DONE)
    return luaL_error(L, "started: already called");
  lua_settop(L, 1);
  lua_replace(L, lua_upvalueindex(3));   /* for k_start */
  c->starting = 0;
  TT_LIST_REMOVE(c->root.parent->children, &c->root, link);
  c->root.parent = &c->group->scope;
  TT_LIST_APPEND(c->root.parent->children, &c->root, link);
  if (ts_cancelled_from(c->root.parent)) ts_wake_subtree(&c->root);
  if (c->waiters) {                     /* wake the caller of g:start */
    tt_task *w = c->waiters;
    do {
      if (w->wait == TT_W_START) {
        ts_wake(w, 0);
        break;
      }
      w = w->wlink.next;
    } while (w != c->waiters);
  }
  return 0;
}

static int tk_spawn(lua_State *L, int start, int granted) {
  tt_sched *S = TT_UPSCHED(L);
  const char *op = start ? "g:start" : "g:spawn";
  tt_group *g = check_group(L, op);
  int daemon, nameidx, fidx;
  tt_task *cur = NULL, *t;
  if (g->state == TT_G_CLOSED)
    return luaL_error(L, "%s: the task group is closed", op);
  fidx = spawn_args(L, op, &daemon, &nameidx);
  if (start) cur = tk_current(L, S, op);
  /* NOTE: daemons neither wait for nor hold a slot: the limit bounds the
     main work, and a daemon lives until that work is done. */
  if (g->limit && !granted && !daemon &&
      (g->nwork + g->nreserved >= g->limit || g->lwaiters)) {
    cur = tk_current(L, S, op);
    if (ts_cancelled(cur)) return tk_yield(L, cur, tk_checkpoint_k, 0);
    TT_LIST_APPEND(g->lwaiters, cur, wlink);
    cur->wlist = &g->lwaiters;
    cur->granted = 0;
    cur->state = TT_T_BLOCKED;
    cur->wait = TT_W_LIMIT;
    cur->wake_cancel = 0;
    return tk_yield(L, cur, k_spawn_slot, start);
  }
  if (!start) {
    tk_group_add(L, S, g, fidx, nameidx, daemon, &g->scope);
    return 1;
  }
  /* g:start: the function gets started() first, and runs under the
     caller's scope until it calls it. */
  lua_pushlightuserdata(L, S);
  lua_pushnil(L);                       /* the task, */
  lua_pushnil(L);                       /* the value it passes to started() */
  lua_pushcclosure(L, l_started, 3);
  lua_insert(L, fidx + 1);
  t = tk_group_add(L, S, g, fidx, nameidx, daemon, cur->scope);
  lua_pushvalue(L, -1);
  lua_setupvalue(L, fidx + 1, 2);
  t->starting = 1;
  return tk_block_start(L, cur, t, fidx + 1);
}

/* g:spawn([opts,] fn, ...) -> Task */
int l_group_spawn(lua_State *L) {
  return tk_spawn(L, 0, 0);
}

/* g:start([opts,] fn, ...) -> the value fn passed to started() */
static int l_start(lua_State *L) {
  return tk_spawn(L, 1, 0);
}

/* g:cancel([reason]) */
static int l_group_cancel(lua_State *L) {
  tt_group *g = check_group(L, "g:cancel");
  if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TSTRING) {
    lua_pushfstring(L, "reason: string or nil expected, got %s",
                    luaL_typename(L, 2));
    tk_argerror(L, 1, "g:cancel", lua_tostring(L, -1));
  }
  if (g->state != TT_G_CLOSED) tk_cancel_reason(L, g->S, &g->scope, 2);
  return 0;
}

/* g.name, g.cancel_called, g.closed, and the methods */
static int l_group_index(lua_State *L) {
  tt_group *g;
  const char *k;
  lua_pushvalue(L, 2);                      /* methods first: the hot path */
  if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) return 1;
  g = check_group(L, "TaskGroup");          /* the method checks its self */
  k = lua_tostring(L, 2);
  if (k && strcmp(k, "name") == 0) {
    tk_push_ref(L, g->name_ref);
  } else if (k && strcmp(k, "cancel_called") == 0) {
    lua_pushboolean(L, g->scope.cancel_called);
  } else if (k && strcmp(k, "closed") == 0) {
    lua_pushboolean(L, g->state == TT_G_CLOSED);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static int l_group_tostring(lua_State *L) {
  tt_group *g = check_group(L, "TaskGroup");
  tk_push_ref(L, g->name_ref);
  lua_pushfstring(L, "tether.TaskGroup '%s' (%s, %d task%s)",
                  lua_tostring(L, -1),
                  g->state == TT_G_CLOSED ? "closed" :
                  g->state == TT_G_JOINING ? "joining" : "open", g->nlive,
                  g->nlive == 1 ? "" : "s");
  return 1;
}

static int l_group_gc(lua_State *L) {
  tt_group *g = check_group(L, "TaskGroup");
  unref(L, &g->name_ref);
  unref(L, &g->errors_ref);
  unref(L, &g->infos_ref);
  unref(L, &g->eg_ref);
  ts_scope_release(L, &g->scope);
  return 0;
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg group_methods[] = {
  {"spawn", l_group_spawn},
  {"start", l_start},
  {"cancel", l_group_cancel},
  {NULL, NULL}
};

static const luaL_Reg group_meta[] = {
  {"__tostring", l_group_tostring},
  {"__gc", l_group_gc},
  {NULL, NULL}
};

static const luaL_Reg group_funcs[] = {
  {"with_group", l_with_group},
  {NULL, NULL}
};

void tt_group_open(lua_State *L, tt_sched *S) {
  luaL_newmetatable(L, GROUP_MT);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, group_meta, 1);
  lua_pushlightuserdata(L, S);
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, group_methods, 1);
  lua_pushcclosure(L, l_group_index, 2);
  lua_setfield(L, -2, "__index");
  S->group_mt = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, group_funcs, 1);
}
