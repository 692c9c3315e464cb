/* harness.c - a Lua 5.4 host whose allocator fails on demand, for spec/alloc_spec.lua */
/*
** usage: alloc-harness SCRIPT [ARGS...]
**
** Runs SCRIPT in a fresh Lua state (standard libraries open; package.path
** and package.cpath pointing at this checkout's lua/ and build directory,
** $TETHER_BUILD or "build") whose allocator can be told, from Lua, to fail:
**
**   alloc_fail_after(k [, burst])  the k-th allocation from now fails, and so
**                                  do the burst-1 after it (default burst 2:
**                                  the failed allocation and Lua's retry after
**                                  its emergency collection), then it disarms
**   alloc_disarm() -> hits         stop failing; how many allocations failed
**   alloc_count() -> n             allocations counted since arming
**   alloc_hits() -> n              allocations failed since arming
**   alloc_total_hits() -> n        allocations failed since the start
**
** Only allocations count (a new block, or a block that grows); frees and
** shrinks always succeed.  The script's arguments are in the global `arg`
** and in `...`.  LUA_INIT_5_4 (or LUA_INIT) runs first, as in lua5.4.
** Exit status: 0 when the script ran, 1 when it raised (the error on
** stderr), 3 on a Lua panic, 2 on bad usage.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

/* ---- types -------------------------------------------------------------- */

typedef struct {
  int armed;
  long count;    /* allocations since arming */
  long fail_at;  /* the first one that fails */
  long burst;    /* how many fail in a row */
  long hits;     /* how many failed since arming */
  long total;    /* how many failed since the start */
} inject_t;

static inject_t inj;

/* ---- static helpers ----------------------------------------------------- */

static void *inject_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  if (inj.armed && (ptr == NULL || nsize > osize)) {
    inj.count++;
    if (inj.count >= inj.fail_at) {
      inj.hits++;
      inj.total++;
      if (inj.count >= inj.fail_at + inj.burst - 1) inj.armed = 0;
      return NULL;
    }
  }
  return realloc(ptr, nsize);
}

static int on_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "alloc-harness: PANIC: unprotected error: %s\n",
          msg ? msg : "(not a string)");
  fflush(stderr);
  exit(3);
  return 0;
}

static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)",
                                         luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* ---- bindings ----------------------------------------------------------- */

/* alloc_fail_after(k [, burst]) */
static int l_fail_after(lua_State *L) {
  lua_Integer k = luaL_checkinteger(L, 1);
  lua_Integer burst = luaL_optinteger(L, 2, 2);
  luaL_argcheck(L, k >= 1, 1, "positive integer expected");
  luaL_argcheck(L, burst >= 1, 2, "positive integer expected");
  inj.count = 0;
  inj.hits = 0;
  inj.fail_at = (long)k;
  inj.burst = (long)burst;
  inj.armed = 1;
  return 0;
}

/* alloc_disarm() -> hits */
static int l_disarm(lua_State *L) {
  inj.armed = 0;
  lua_pushinteger(L, inj.hits);
  return 1;
}

/* alloc_count() -> allocations since arming */
static int l_count(lua_State *L) {
  lua_pushinteger(L, inj.count);
  return 1;
}

/* alloc_hits() -> allocations failed since arming */
static int l_hits(lua_State *L) {
  lua_pushinteger(L, inj.hits);
  return 1;
}

/* alloc_total_hits() -> allocations failed since the program started */
static int l_total_hits(lua_State *L) {
  lua_pushinteger(L, inj.total);
  return 1;
}

/* ---- main --------------------------------------------------------------- */

/* package.path/cpath for this checkout (the harness runs from its root). */
static int set_paths(lua_State *L) {
  const char *build = getenv("TETHER_BUILD");
  if (build == NULL || *build == '\0') build = "build";
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "lua/?.lua;lua/?/init.lua;spec/?.lua;%s", lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  lua_getfield(L, -1, "cpath");
  lua_pushfstring(L, "%s/?.so;%s", build, lua_tostring(L, -1));
  lua_setfield(L, -3, "cpath");
  lua_pop(L, 2);
  return 0;
}

/* Run LUA_INIT_5_4 (or LUA_INIT) as lua.c does: `make check` relies on it
** to keep C modules mapped until the leak check at exit. */
static void run_lua_init(lua_State *L) {
  const char *name = "=LUA_INIT_5_4";
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (init == NULL) return;
  if (init[0] == '@') {
    if (luaL_loadfile(L, init + 1) != LUA_OK) lua_error(L);
  } else if (luaL_loadbuffer(L, init, strlen(init), name) != LUA_OK) {
    lua_error(L);
  }
  lua_call(L, 0, 0);
}

/* Protected: set up, load and run the script (args in upvalues). */
static int run_script(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  int i;
  luaL_openlibs(L);
  set_paths(L);
  lua_register(L, "alloc_fail_after", l_fail_after);
  lua_register(L, "alloc_disarm", l_disarm);
  lua_register(L, "alloc_count", l_count);
  lua_register(L, "alloc_hits", l_hits);
  lua_register(L, "alloc_total_hits", l_total_hits);
  lua_createtable(L, argc, 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_setglobal(L, "arg");
  run_lua_init(L);
  if (luaL_loadfile(L, argv[0]) != LUA_OK) return lua_error(L);
  for (i = 1; i < argc; i++) lua_pushstring(L, argv[i]);
  lua_call(L, argc - 1, 0);
  return 0;
}

int main(int argc, char **argv) {
  lua_State *L;
  int status;
  if (argc < 2) {
    fprintf(stderr, "usage: %s SCRIPT [ARGS...]\n", argv[0]);
    return 2;
  }
  L = lua_newstate(inject_alloc, NULL);
  if (L == NULL) {
    fprintf(stderr, "alloc-harness: cannot create a Lua state\n");
    return 2;
  }
  lua_atpanic(L, on_panic);
  lua_pushcfunction(L, msgh);
  lua_pushcfunction(L, run_script);
  lua_pushinteger(L, argc - 1);
  lua_pushlightuserdata(L, argv + 1);
  status = lua_pcall(L, 2, 0, 1);
  if (status != LUA_OK) {
    inj.armed = 0;
    fprintf(stderr, "alloc-harness: %s\n",
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "(error object)");
    lua_close(L);
    return 1;
  }
  inj.armed = 0;
  lua_close(L);
  return 0;
}
