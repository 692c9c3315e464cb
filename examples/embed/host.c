/* host.c - a C program that embeds Lua 5.4 and tether on a libuv loop of its own */
/*
** It links Lua and libuv, not tether: tether is loaded with require (from
** LUA_CPATH, as `make embed-demo` sets it) and driven through the
** header-only functions of csrc/tether.h.  What it shows:
**
**   - tether on the host's loop (tether_loop_set), beside a C timer of the
**     host's that ticks every 5 ms while Lua tasks sleep;
**   - a C callback API (host.after / host.cancel: a one-shot timer) turned
**     into a cancellable tether checkpoint with tether.await;
**   - tether_task_launch, tether_ready_run (one step before the loop runs)
**     and tether_unhandled_set (a failing task nobody waits for reaches the
**     host's handler, once);
**   - a clean exit: uv_run returns when the tasks are done, lua_close, and
**     the loop closes with nothing left on it (valgrind finds no leak).
**
** It checks what it shows and ends with "N passed, N failed" (exit status
** 1 when anything failed).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"
#include <uv.h>

#include "tether.h"

/* ---- types -------------------------------------------------------------- */

/* A host.after request: a one-shot timer that calls a Lua function. */
typedef struct after_req {
  uv_timer_t timer;
  lua_State *L;
  int fn_ref;               /* the function to call, LUA_NOREF once called */
  int ms;
} after_req;

/* ---- state -------------------------------------------------------------- */

static uv_loop_t loop;
static uv_timer_t ticker;
static lua_State *L;
static int ticks, main_ref = LUA_NOREF, npassed, nfailed;
static int unhandled_calls;
static char unhandled_msg[256];

/* The Lua side: main() runs as a launched task. */
static const char *const script =
  "local tether = require('tether')\n"
  "local function host_sleep(ms)\n"
  "  local token\n"
  "  return tether.await(function(done) token = host.after(ms, done) end,\n"
  "                      function() return host.cancel(token) end)\n"
  "end\n"
  "return function()\n"
  "  local seen = {}\n"
  "  local slept\n"
  "  tether.with_group(function(g)\n"
  "    for i = 1, 3 do\n"
  "      g:spawn(function()\n"
  "        for _ = 1, 3 do\n"
  "          tether.sleep(0.004 * i)\n"
  "          seen[#seen + 1] = host_ticks\n"
  "        end\n"
  "      end)\n"
  "    end\n"
  "    g:spawn(function() slept = host_sleep(20) end)\n"
  "  end)\n"
  "  local cancelled = not tether.move_on_after(0.01, host_sleep, 60000)\n"
  "  return #seen, seen[#seen], slept, cancelled\n"
  "end\n";

/* ---- static helpers ----------------------------------------------------- */

static void check(int ok, const char *what) {
  printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (ok) npassed++;
  else nfailed++;
}

static void after_closed(uv_handle_t *h) {
  free(h->data);
}

static void after_fired(uv_timer_t *t) {
  after_req *r = t->data;
  lua_rawgeti(r->L, LUA_REGISTRYINDEX, r->fn_ref);
  luaL_unref(r->L, LUA_REGISTRYINDEX, r->fn_ref);
  r->fn_ref = LUA_NOREF;
  lua_pushinteger(r->L, r->ms);
  if (lua_pcall(r->L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "host: callback failed: %s\n", lua_tostring(r->L, -1));
    lua_pop(r->L, 1);
  }
  uv_close((uv_handle_t *)t, after_closed);
}

/* host.after(ms, fn) -> token: calls fn(ms) once, ms milliseconds later */
static int l_after(lua_State *L) {
  int ms = (int)luaL_checkinteger(L, 1);
  after_req *r;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  r = malloc(sizeof *r);
  if (r == NULL) return luaL_error(L, "not enough memory");
  r->L = L;
  r->ms = ms;
  lua_pushvalue(L, 2);
  r->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_init(&loop, &r->timer);
  r->timer.data = r;
  uv_timer_start(&r->timer, after_fired, (uint64_t)ms, 0);
  lua_pushlightuserdata(L, r);
  return 1;
}

/* host.cancel(token) -> true: the callback will not be called */
static int l_cancel(lua_State *L) {
  after_req *r = lua_touserdata(L, 1);
  if (r && r->fn_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, r->fn_ref);
    r->fn_ref = LUA_NOREF;
    uv_close((uv_handle_t *)&r->timer, after_closed);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* The handler of failures nobody waits for: (error, task, traceback). */
static int l_unhandled(lua_State *L) {
  unhandled_calls++;
  snprintf(unhandled_msg, sizeof unhandled_msg, "%s",
           luaL_tolstring(L, 1, NULL));
  return 0;
}

/* Is the task whose handle is in registry ref `ref` done? */
static int task_done(int ref) {
  int done;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_getfield(L, -1, "done");
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return 1;
  }
  done = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return done;
}

/* The host's own timer: counts, tells Lua, stops once main is done. */
static void on_tick(uv_timer_t *t) {
  ticks++;
  lua_pushinteger(L, ticks);
  lua_setglobal(L, "host_ticks");
  if (task_done(main_ref)) uv_close((uv_handle_t *)t, NULL);
}

static int require_tether(void) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "tether");
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* ---- main --------------------------------------------------------------- */

int main(void) {
  static const luaL_Reg host_funcs[] = {
    {"after", l_after}, {"cancel", l_cancel}, {NULL, NULL}
  };
  int r, nseen, last, slept, cancelled;
  uv_loop_init(&loop);
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_newlib(L, host_funcs);
  lua_setglobal(L, "host");
  lua_pushinteger(L, 0);
  lua_setglobal(L, "host_ticks");

  check(tether_api_get(L) == NULL, "before require, tether's API is absent");
  check(tether_loop_set(L, &loop) == UV_ENOENT,
        "... and tether_loop_set says so (UV_ENOENT)");
  if (!require_tether()) {
    check(0, "require('tether')");
    goto out;
  }
  check(tether_loop_set(L, &loop) == 0, "tether_loop_set on the host's loop");
  check(tether_loop_get(L) == &loop, "tether_loop_get returns it");
  lua_pushcfunction(L, l_unhandled);
  check(tether_unhandled_set(L) == LUA_OK, "tether_unhandled_set");

  /* main(), launched; and a task that fails with nobody waiting for it */
  if (luaL_loadstring(L, script) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    check(0, "load the script");
    goto out;
  }
  r = tether_task_launch(L, 0);
  check(r == LUA_OK, "tether_task_launch(main)");
  if (r != LUA_OK) goto out;
  main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_loadstring(L, "local tether = require('tether')\n"
                     "tether.sleep(0.002)\n"
                     "error('boom: nobody waits for me', 0)\n");
  check(tether_task_launch(L, 0) == LUA_OK, "tether_task_launch(failing)");
  lua_pop(L, 1);
  check(tether_ready_run(L) == 1,
        "tether_ready_run: one step, and tasks are ready after it");

  uv_timer_init(&loop, &ticker);
  uv_timer_start(&ticker, on_tick, 5, 5);
  uv_run(&loop, UV_RUN_DEFAULT);

  check(task_done(main_ref), "uv_run returned once the tasks were done");
  lua_rawgeti(L, LUA_REGISTRYINDEX, main_ref);
  lua_getfield(L, -1, "result");
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 4, 0) != LUA_OK) {
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    check(0, "main's result");
    goto out;
  }
  nseen = (int)lua_tointeger(L, -4);
  last = (int)lua_tointeger(L, -3);
  slept = (int)lua_tointeger(L, -2);
  cancelled = lua_toboolean(L, -1);
  lua_pop(L, 4);
  check(nseen == 9, "the Lua tasks slept and woke 9 times");
  check(last > 0 && ticks > 0, "the host's timer ticked while they slept");
  check(slept == 20, "tether.await over host.after returned its value");
  check(cancelled, "a move_on_after cancelled an await (host.cancel ran)");
  check(unhandled_calls == 1 && strstr(unhandled_msg, "boom") != NULL,
        "the unhandled failure reached the host's handler once");

out:
  luaL_unref(L, LUA_REGISTRYINDEX, main_ref);
  lua_close(L);
  uv_run(&loop, UV_RUN_DEFAULT);
  check(uv_loop_close(&loop) == 0, "the loop closes: nothing left on it");
  printf("%d passed, %d failed\n", npassed, nfailed);
  return nfailed ? 1 : 0;
}
