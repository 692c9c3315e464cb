/* core.c - the tether.core module: the scheduler state and luaopen_tether_core */
#include <string.h>

#include "internal.h"

/* ---- static helpers --------------------------------------------------- */

/*
** The Lua state closes: free the timer heap, and close the default loop if
** tether used it and nothing is left on it (NOTE: libuv keeps memory in a
** loop until uv_loop_close; a loop a host handed in is the host's to close,
** and a loop still busy with someone else's handles is left alone).
*/
static int l_sched_gc(lua_State *L) {
  tt_sched *S = lua_touserdata(L, 1);
  if (S->loop == uv_default_loop() && !S->running) uv_loop_close(S->loop);
  ts_timer_free(S);
  return 0;
}

/* The scheduler of `L`, created on first use. */
static tt_sched *tk_sched_get(lua_State *L) {
  tt_sched *S;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &tt_sched_key) == LUA_TUSERDATA) {
    S = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return S;
  }
  lua_pop(L, 1);
  S = lua_newuserdatauv(L, sizeof(tt_sched), 0);
  memset(S, 0, sizeof *S);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_sched_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &tt_sched_key);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  S->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  lua_newtable(L);
  S->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  S->loop = uv_default_loop();
  S->t0 = uv_hrtime();
  return S;
}

/* Is the value at `idx` callable (a function, or has __call)? */
int tk_is_callable(lua_State *L, int idx) {
  if (lua_isfunction(L, idx)) return 1;
  if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

/* Push the value of registry ref `ref` (nil for no ref). */
void tk_push_ref(lua_State *L, int ref) {
  if (ref == LUA_NOREF || ref == LUA_REFNIL) lua_pushnil(L);
  else lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
}

/* The length of the array at `idx`: its field n when that is an integer
** (as table.pack sets it, counting nils), else its raw length. */
int tk_len_n(lua_State *L, int idx) {
  lua_Integer n;
  int isint;
  lua_getfield(L, idx, "n");
  n = lua_tointegerx(L, -1, &isint);
  if (!isint || lua_type(L, -1) != LUA_TNUMBER) n = (lua_Integer)lua_rawlen(L, idx);
  lua_pop(L, 1);
  return (int)n;
}

/* A number argument: strictly a number (no string coercion), not NaN. */
lua_Number tk_checknum(lua_State *L, int arg) {
  lua_Number d;
  if (lua_type(L, arg) != LUA_TNUMBER) luaL_typeerror(L, arg, "number");
  d = lua_tonumber(L, arg);
  luaL_argcheck(L, d == d, arg, "number expected, got nan");
  return d;
}

static int safe_tostring_k(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Push tostring(value at idx), never raising: a failing __tostring gives
** a placeholder that says so. */
void tk_push_safe_tostring(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, safe_tostring_k);
  lua_pushvalue(L, idx);
  switch (lua_pcall(L, 1, 1, 0)) {
    case LUA_OK: if (lua_isstring(L, -1)) return; break;
    case LUA_ERRMEM: lua_error(L); break;       /* never hide it */
    default: break;
  }
  {
    lua_pop(L, 1);
    lua_pushfstring(L, "(%s error object: its __tostring failed)",
                    luaL_typename(L, idx));
  }
}

/* The userdata of metatable `tname` at argument 1 of method `what` (as
** "t:result"), or a clear error naming the method. */
void *tk_checkself(lua_State *L, int mtref, const char *tname,
                   const char *what) {
  void *p = lua_touserdata(L, 1);
  if (p != NULL && lua_getmetatable(L, 1)) {
    int same;
    lua_rawgeti(L, LUA_REGISTRYINDEX, mtref);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same) return p;
  }
  luaL_error(L, "bad self for '%s' (%s expected, got %s); call it as a "
             "method", what, tname, luaL_typename(L, 1));
  return NULL;
}

/* ---- public C API ----------------------------------------------------- */

int tether_set_loop(lua_State *L, uv_loop_t *loop) {
  tt_sched *S = tk_sched_get(L);
  if (S->running) return UV_EBUSY;
  S->loop = loop ? loop : uv_default_loop();
  return 0;
}

uv_loop_t *tether_get_loop(lua_State *L) {
  return tk_sched_get(L)->loop;
}

/* ---- open ------------------------------------------------------------- */

int luaopen_tether_core(lua_State *L) {
  tt_sched *S = tk_sched_get(L);
  lua_newtable(L);
  tt_errors_open(L, S);     /* the classes first: the rest refers to them */
  tt_sched_open(L, S);
  tt_task_open(L, S);
  tt_scope_open(L, S);
  tt_group_open(L, S);
  tt_errgroup_open(L, S);
  tt_gather_open(L, S);
  tt_dump_open(L, S);
  lua_pushliteral(L, TETHER_VERSION);
  lua_setfield(L, -2, "VERSION");
  return 1;
}
