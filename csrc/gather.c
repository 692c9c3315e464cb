/* gather.c - best effort and racing: gather and first, built on task groups */
#include "internal.h"

#define FIRST_REASON "tether.first: another function finished first"

/* ---- static helpers --------------------------------------------------- */

/* Check that arg 1 is an array of functions; return its length. */
static int check_fns(lua_State *L, const char *fname, int nonempty) {
  int i, n;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = tk_len_n(L, 1);
  if (nonempty && n < 1)
    luaL_argerror(L, 1, "non-empty array of functions expected");
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (!tk_is_callable(L, -1))
      luaL_error(L, "bad argument #1 to '%s' (function expected at index %d, "
                 "got %s)", fname, i, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  return n;
}

/* Run `body` (a C closure over S and `nup` values below it) as a
** with_group body; continue with `k`. */
static int tk_run_group(lua_State *L, tt_sched *S, lua_CFunction body,
                        int nup, lua_KFunction k) {
  int i, top = lua_gettop(L);
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_with_group, 1);
  lua_pushlightuserdata(L, S);
  for (i = nup - 1; i >= 0; i--) lua_pushvalue(L, top - i);
  lua_pushcclosure(L, body, nup + 1);
  lua_callk(L, 1, 0, 0, k);
  return k(L, LUA_OK, 0);
}

/* Spawn `child` into the group at 1 once per function of the array in
** upvalue 2, passing each function, upvalue 3 and its index. */
static int spawn_each(lua_State *L, lua_CFunction child) {
  tt_group *g = lua_touserdata(L, 1);
  int i, n = tk_len_n(L, lua_upvalueindex(2));
  for (i = 1; i <= n; i++) {
    int top = lua_gettop(L);
    lua_pushlightuserdata(L, g->S);
    lua_pushcclosure(L, child, 1);
    lua_rawgeti(L, lua_upvalueindex(2), i);
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_pushinteger(L, i);
    lua_pushvalue(L, 1);
    tk_group_spawn(L, g, top + 1);
    lua_settop(L, top);
  }
  return 0;
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
  return spawn_each(L, gather_child);
}

static int k_gather(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  lua_settop(L, 2);
  return 1;
}

/* tether.gather(fns) -> { {ok=true, n=, ...} | {ok=false, error=e}, ... } */
static int l_gather(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  int n = check_fns(L, "gather", 0);
  tk_current(L, S, "tether.gather");
  lua_settop(L, 1);
  lua_createtable(L, n, 0);
  return tk_run_group(L, S, gather_body, 2, k_gather);
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
  lua_rawseti(L, -2, n);
  return 0;
}

static int first_child(lua_State *L) {
  return run_child(L, k_first_child);
}

static int first_body(lua_State *L) {
  return spawn_each(L, first_child);
}

static int k_first(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  (void)status; (void)ctx;
  lua_settop(L, 2);
  if (lua_getfield(L, 2, "values") == LUA_TTABLE) {
    int n;
    lua_getfield(L, 3, "n");
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many results");
    for (int i = 1; i <= n; i++) lua_rawgeti(L, 3, i);
    return n;
  }
  lua_getfield(L, 2, "failures");
  lua_getfield(L, 2, "infos");
  tk_new_errorgroup(L, S, "every function failed in tether.first", -2, -1);
  return lua_error(L);
}

/* tether.first(fns) -> the results of the first function to succeed */
static int l_first(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  check_fns(L, "first", 1);
  tk_current(L, S, "tether.first");
  lua_settop(L, 1);
  lua_createtable(L, 0, 3);
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "n");
  lua_setfield(L, -2, "failures");
  lua_newtable(L);
  lua_setfield(L, -2, "infos");
  return tk_run_group(L, S, first_body, 2, k_first);
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
