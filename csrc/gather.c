/* gather.c - best effort and racing: gather and first, built on task groups */
#include "internal.h"

#define FIRST_REASON "tether.first: another function finished first"

/* ---- static helpers --------------------------------------------------- */

static const char *const gather_keys[] = { "limit", NULL };

/*
** Check the arguments of gather/first (`fname`): arg 1 an array of
** functions, arg 2 the options or nil, nothing after.  Replace arg 2 by the
** options of the internal group: the limit, and a name after the call site
** ("gather at file.lua:20").  Returns the number of functions.
*/
static int check_args(lua_State *L, const char *fname, int nonempty) {
  int i, n, limit = 0;
  if (!lua_istable(L, 1)) {
    lua_pushfstring(L, "array of functions expected, got %s",
                    luaL_typename(L, 1));
    tk_argerror(L, 1, fname, lua_tostring(L, -1));
  }
  n = tk_len_n(L, 1);
  if (nonempty && n < 1)
    tk_argerror(L, 1, fname, "non-empty array of functions expected");
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (!tk_is_callable(L, -1)) {
      lua_pushfstring(L, "function expected at index %d, got %s", i,
                      luaL_typename(L, -1));
      tk_argerror(L, 1, fname, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
  }
  if (tk_check_opts(L, 2, fname, gather_keys)) {
    int ty = lua_getfield(L, 2, "limit");
    lua_Integer v;
    int isint;
    v = lua_tointegerx(L, -1, &isint);
    if (ty != LUA_TNIL) {
      if (ty != LUA_TNUMBER || !isint || v < 1 || v > 0x7fffffff)
        tk_argerror(L, 2, fname, "option 'limit': positive integer expected");
      limit = (int)v;
    }
    lua_pop(L, 1);
  }
  if (!lua_isnone(L, 3)) {
    lua_pushfstring(L, "no argument expected after the options, got %s",
                    luaL_typename(L, 3));
    tk_argerror(L, 3, fname, lua_tostring(L, -1));
  }
  lua_settop(L, 1);
  lua_createtable(L, 0, 2);                  /* 2: the group's options */
  if (limit) {
    lua_pushinteger(L, limit);
    lua_setfield(L, 2, "limit");
  }
  {
    lua_Debug ar;                /* the name: "gather at f.lua:20" */
    int level, found = 0;
    for (level = 1; level < 8 && lua_getstack(L, level, &ar); level++)
      if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
        found = 1;
        break;
      }
    if (found)
      lua_pushfstring(L, "%s at %s:%d", fname + 7, ar.short_src,
                      ar.currentline);
    else
      lua_pushstring(L, fname + 7);          /* without "tether." */
  }
  lua_setfield(L, 2, "name");
  return n;
}

/* Run `body` (a C closure over S and the values at 1 and 3) as the body of
** a group with the options at 2; continue with `k`. */
static int tk_run_group(lua_State *L, tt_sched *S, lua_CFunction body,
                        lua_KFunction k) {
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_with_group, 1);
  lua_pushvalue(L, 2);
  lua_pushlightuserdata(L, S);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 3);
  lua_pushcclosure(L, body, 3);
  lua_callk(L, 2, 0, 0, k);
  return k(L, LUA_OK, 0);
}

static int gather_child(lua_State *L);
static int first_child(lua_State *L);
static int k_spawn_loop(lua_State *L, int status, lua_KContext which);

/*
** The body of gather's and first's group: spawn a child (gather_child or
** first_child, by `which`) once per function of the array in upvalue 2,
** through g:spawn (which waits under a limit), passing each function,
** upvalue 3 and its index.  Stack: 1 group, 2 the last index spawned.
*/
static int spawn_loop(lua_State *L, int which) {
  tt_sched *S = TT_UPSCHED(L);
  int i, n = tk_len_n(L, lua_upvalueindex(2));
  while ((i = (int)lua_tointeger(L, 2) + 1) <= n) {
    lua_Debug ar;
    const char *what = which ? "first" : "gather";
    lua_settop(L, 1);
    lua_pushinteger(L, i);                              /* 2 */
    lua_pushlightuserdata(L, S);
    lua_pushcclosure(L, l_group_spawn, 1);
    lua_pushvalue(L, 1);                                /* self */
    lua_createtable(L, 0, 1);                           /* opts */
    lua_rawgeti(L, lua_upvalueindex(2), i);
    lua_getinfo(L, ">S", &ar);
    if (ar.what[0] == 'C' || ar.linedefined < 0)
      lua_pushfstring(L, "%s[%d]", what, i);
    else
      lua_pushfstring(L, "%s[%d] %s:%d", what, i, ar.short_src,
                      ar.linedefined);
    lua_setfield(L, -2, "name");
    lua_pushlightuserdata(L, S);
    lua_pushcclosure(L, which ? first_child : gather_child, 1);
    lua_rawgeti(L, lua_upvalueindex(2), i);
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_pushinteger(L, i);
    lua_pushvalue(L, 1);
    lua_callk(L, 7, 0, which, k_spawn_loop);
  }
  return 0;
}

static int k_spawn_loop(lua_State *L, int status, lua_KContext which) {
  (void)status;
  return spawn_loop(L, (int)which);
}

/* Push a table of the `n` values from stack index `first` on, with n set. */
static void pack(lua_State *L, int first, int n, int nrec) {
  int i;
  lua_createtable(L, n, nrec);
  for (i = 0; i < n; i++) {
    lua_pushvalue(L, first + i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
}

/* A child of gather/first: args fn, shared table, index, group.  Calls fn
** protected; `k` gets the outcome with fn's results from index 6. */
static int run_child(lua_State *L, lua_KFunction k) {
  lua_settop(L, 4);
  lua_pushcfunction(L, tt_msgh);
  lua_pushvalue(L, 1);
  return k(L, lua_pcallk(L, 0, LUA_MULTRET, 5, 0, k), 0);
}

/* ---- gather ----------------------------------------------------------- */

/* Child of gather: stack fn, results, i, group, msgh, fn-copy. */
static int k_gather_child(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) {
    pack(L, 6, lua_gettop(L) - 5, 2);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "ok");
  } else {
    if (tk_is_cancelled(L, S, -1)) return lua_error(L);
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "ok");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "error");
  }
  lua_rawseti(L, 2, lua_tointeger(L, 3));
  return 0;
}

static int gather_child(lua_State *L) {
  return run_child(L, k_gather_child);
}

static int gather_body(lua_State *L) {
  lua_settop(L, 1);
  lua_pushinteger(L, 0);
  return spawn_loop(L, 0);
}

static int k_gather(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  lua_settop(L, 3);
  return 1;
}

/* tether.gather(fns [, opts]) -> { {ok=true, n=, ...} | {ok=false, error=e}, ... } */
static int l_gather(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  int n = check_args(L, "tether.gather", 0);       /* 1 fns, 2 group opts */
  tk_current(L, S, "tether.gather");
  lua_createtable(L, n, 0);                        /* 3 results */
  return tk_run_group(L, S, gather_body, k_gather);
}

/* ---- first ------------------------------------------------------------ */

/* Child of first: stack fn, state, i, group, msgh, fn-copy. */
static int k_first_child(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  int n;
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) {
    if (lua_getfield(L, 2, "values") != LUA_TNIL) return 0;
    lua_pop(L, 1);
    pack(L, 6, lua_gettop(L) - 5, 1);
    lua_setfield(L, 2, "values");
    lua_pushliteral(L, FIRST_REASON);
    tk_cancel_reason(L, S, &((tt_group *)lua_touserdata(L, 4))->scope, -1);
    return 0;
  }
  if (tk_is_cancelled(L, S, -1)) return lua_error(L);
  lua_getfield(L, 2, "failures");
  lua_getfield(L, -1, "n");
  n = (int)lua_tointeger(L, -1) + 1;
  lua_pop(L, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, n);
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  lua_getfield(L, 2, "infos");
  lua_createtable(L, 0, 2);
  tk_push_task_name(L, S->current);
  lua_setfield(L, -2, "task");
  tk_push_current_traceback(L, S, -4);
  lua_setfield(L, -2, "traceback");
  tk_set_task_origin(L, S->current);
  lua_rawseti(L, -2, n);
  return 0;
}

static int first_child(lua_State *L) {
  return run_child(L, k_first_child);
}

static int first_body(lua_State *L) {
  lua_settop(L, 1);
  lua_pushinteger(L, 0);
  return spawn_loop(L, 1);
}

static int k_first(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  (void)status; (void)ctx;
  lua_settop(L, 3);
  if (lua_getfield(L, 3, "values") == LUA_TTABLE) {
    int n;
    lua_getfield(L, 4, "n");
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many results");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, 4, i);
    return n;
  }
  lua_getfield(L, 3, "failures");
  lua_getfield(L, 3, "infos");
  tk_new_errorgroup(L, S, "every function failed in tether.first", -2, -1);
  return lua_error(L);
}

/* tether.first(fns [, opts]) -> the results of the first function to succeed */
static int l_first(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  check_args(L, "tether.first", 1);                /* 1 fns, 2 group opts */
  tk_current(L, S, "tether.first");
  lua_createtable(L, 0, 3);                        /* 3 state */
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "n");
  lua_setfield(L, -2, "failures");
  lua_newtable(L);
  lua_setfield(L, -2, "infos");
  return tk_run_group(L, S, first_body, k_first);
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg gather_funcs[] = {
  {"gather", l_gather},
  {"first", l_first},
  {NULL, NULL}
};

void tt_gather_open(lua_State *L, tt_sched *S) {
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, gather_funcs, 1);
}
