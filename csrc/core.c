/* core.c - the tether.core module: the scheduler state, the C API and luaopen_tether_core */
#include <stdlib.h>
#include <string.h>

#include "io.h"

/* ---- static helpers --------------------------------------------------- */

/*
** The Lua state closes: end a session still running (ts_shutdown), free
** the timer heap, and close the default loop if tether used it and nothing
** is left on it (NOTE: libuv keeps memory in a loop until uv_loop_close; a
** loop a host handed in is the host's to close, and a loop still busy with
** someone else's handles is left alone).
*/
static int l_sched_gc(lua_State *L) {
  tt_sched *S = lua_touserdata(L, 1);
  ts_shutdown(S);
  if (S->loop == uv_default_loop() && !S->running) uv_loop_close(S->loop);
  ts_timer_free(S);
  free(S->scratch);
  S->scratch = NULL;
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
  S->from = S->L;
  S->unhandled_ref = S->guard_ref = S->dump_ref = LUA_NOREF;
  S->t0 = uv_hrtime();
  return S;
}

/* ---- public C API ----------------------------------------------------- */

int tether_set_loop(lua_State *L, uv_loop_t *loop) {
  tt_sched *S = tk_sched_get(L);
  if (S->running && loop != S->loop) return UV_EBUSY;
  S->host_loop = loop;
  return 0;
}

uv_loop_t *tether_get_loop(lua_State *L) {
  tt_sched *S = tk_sched_get(L);
  uv_loop_t *luv;
  if (S->running) return S->loop;
  if (S->host_loop) return S->host_loop;
  luv = ts_luv_loop(L);
  return luv ? luv : uv_default_loop();
}

/* ---- the header-only API's entry points (tether.h) --------------------- */

static tt_sched *capi_sched(lua_State *L) {
  tt_sched *S;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tt_sched_key);
  S = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return S;
}

static int capi_task_launch(lua_State *L, int nargs) {
  lua_pushlightuserdata(L, capi_sched(L));
  lua_pushcclosure(L, l_launch, 1);
  lua_insert(L, -(nargs + 2));
  return lua_pcall(L, nargs + 1, 1, 0);
}

static int capi_unhandled_set(lua_State *L) {
  lua_pushlightuserdata(L, capi_sched(L));
  lua_pushcclosure(L, l_on_unhandled, 1);
  lua_insert(L, -2);
  return lua_pcall(L, 1, 0, 0);
}

static int capi_ready_run(lua_State *L) {
  return ts_ready_run(capi_sched(L));
}

static const tether_api capi = {
  TETHER_API_VERSION,
  tether_set_loop,
  tether_get_loop,
  capi_task_launch,
  capi_unhandled_set,
  capi_ready_run
};

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
  tt_sync_open(L, S);
  tt_channel_open(L, S);
  tt_dump_open(L, S);
  tt_io_open(L, S);
  tt_process_open(L, S);
  tt_signal_open(L, S);
  tt_stdio_open(L, S);
  tt_embed_open(L, S);
  tt_dns_open(L, S);
  tt_listen_open(L, S);
  tt_tcp_open(L, S);
  tt_unix_open(L, S);
  tt_udp_open(L, S);
  tt_fs_open(L, S);
  tt_thread_open(L, S);
  /* NOTE: a string key, the one the header-only API knows; it is in the
     "tether." namespace of the metatables that luaL_newmetatable names. */
  lua_pushlightuserdata(L, (void *)&capi);
  lua_setfield(L, LUA_REGISTRYINDEX, TETHER_API_KEY);
  lua_pushliteral(L, TETHER_VERSION);
  lua_setfield(L, -2, "VERSION");
  return 1;
}
