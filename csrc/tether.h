/* tether.h - the public C API of tether: embedding tether in a host program */
#ifndef TETHER_H
#define TETHER_H

#include "lua.h"
#include <uv.h>

#define TETHER_VERSION "0.1.0"

/*
** A host embeds tether in one of two ways:
**
** - It links the module (build/tether/core.so, or the objects of csrc/)
**   and calls the linked functions below: luaopen_tether_core,
**   tether_set_loop, tether_get_loop.
**
** - It loads tether like any Lua program does, with require("tether"),
**   and uses the header-only functions (tether_loop_set ... below).  They
**   need no link to the module: the module leaves a table of its C entry
**   points in the Lua registry (key TETHER_API_KEY), and these static
**   inline functions call through it.  They return an error status, and
**   change nothing, when tether is not loaded in the state.
**
** Every function here is called from the host's own code, on the loop's
** thread, never from inside a task.  None of them raises a Lua error or
** yields.
**
** Which loop: at each tether.run or tether.launch that starts a session
** (no root live), tether uses the loop the host set, else luv's loop when
** luv is loaded in the same state (it must run on the same libuv: checked),
** else uv_default_loop().  The session's handles stay on that loop until
** its last root is done.  Tasks run whenever the host runs the loop
** (uv_run in any mode): a launched root keeps the loop alive until it is
** done, and tether never calls uv_stop on it.
*/

/* ---- linked functions -------------------------------------------------- */

/*
** Open the module: pushes the `tether.core` table.  Registered by
** `require("tether.core")`; a host may also call it through luaL_requiref.
*/
int luaopen_tether_core(lua_State *L);

/*
** Use `loop` for the sessions of the Lua state `L` (NULL: pick one at each
** session, as above).  May be called before luaopen_tether_core.  The loop
** must outlive every use of tether in `L`; tether never closes it.
** Returns 0, or UV_EBUSY while a session runs on another loop.
*/
int tether_set_loop(lua_State *L, uv_loop_t *loop);

/*
** The loop that tether uses in `L`: the session's while one runs, else the
** one the next session would use (luv's or the default loop, unless the
** host set one).
*/
uv_loop_t *tether_get_loop(lua_State *L);

/* ---- header-only functions ---------------------------------------------- */

#define TETHER_API_KEY "tether.api"   /* registry: light userdata */
#define TETHER_API_VERSION 1

/* The module's entry points; the header-only functions call them. */
typedef struct tether_api {
  int version;                /* TETHER_API_VERSION */
  int (*loop_set)(lua_State *L, uv_loop_t *loop);
  uv_loop_t *(*loop_get)(lua_State *L);
  int (*task_launch)(lua_State *L, int nargs);
  int (*unhandled_set)(lua_State *L);
  int (*ready_run)(lua_State *L);
} tether_api;

/* The entry points of the tether loaded in `L`, or NULL when there is none
** (or it speaks another version of this header). */
static inline const tether_api *tether_api_get(lua_State *L) {
  const tether_api *api;
  lua_getfield(L, LUA_REGISTRYINDEX, TETHER_API_KEY);
  api = (const tether_api *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return api && api->version == TETHER_API_VERSION ? api : NULL;
}

/*
** As tether_set_loop.  Returns 0, UV_EBUSY while a session runs on another
** loop, or UV_ENOENT when tether is not loaded in `L`.
*/
static inline int tether_loop_set(lua_State *L, uv_loop_t *loop) {
  const tether_api *api = tether_api_get(L);
  return api ? api->loop_set(L, loop) : UV_ENOENT;
}

/* As tether_get_loop; NULL when tether is not loaded in `L`. */
static inline uv_loop_t *tether_loop_get(lua_State *L) {
  const tether_api *api = tether_api_get(L);
  return api ? api->loop_get(L) : NULL;
}

/*
** tether.launch from C.  Stack: a function and `nargs` arguments above it,
** which are popped.  Starts the function as a launched root task (it runs
** when the loop runs next) and pushes its Task handle: returns LUA_OK.  On
** failure pushes the error instead and returns its status (LUA_ERRRUN,
** LUA_ERRMEM); LUA_ERRRUN with a message when tether is not loaded.
** The root's failure goes to the unhandled-error handler unless someone
** calls t:wait(), t:result() or t:error() on the handle first.
*/
static inline int tether_task_launch(lua_State *L, int nargs) {
  const tether_api *api = tether_api_get(L);
  if (api) return api->task_launch(L, nargs);
  lua_pop(L, nargs + 1);
  lua_pushliteral(L, "tether is not loaded in this Lua state");
  return LUA_ERRRUN;
}

/*
** tether.on_unhandled from C.  Pops the value on top: a function (the new
** handler, called as handler(error, task, traceback) for every launched
** root that fails with nobody asking for its outcome) or nil (the default:
** print the error, an ErrorGroup's whole tree, on stderr).  Returns LUA_OK,
** or an error status with the error pushed.
*/
static inline int tether_unhandled_set(lua_State *L) {
  const tether_api *api = tether_api_get(L);
  if (api) return api->unhandled_set(L);
  lua_pop(L, 1);
  lua_pushliteral(L, "tether is not loaded in this Lua state");
  return LUA_ERRRUN;
}

/*
** Run the tasks that are ready now, once (one batch; tasks they make ready
** wait for the next call or for the loop), for a host that wants to step
** tether at a point of its choosing.  The loop runs them anyway whenever
** it runs.  Returns 1 when tasks are still ready, 0 when none, UV_EBUSY
** when called from inside a task or a handler that tether runs, UV_ENOENT
** when tether is not loaded in `L`.
*/
static inline int tether_ready_run(lua_State *L) {
  const tether_api *api = tether_api_get(L);
  return api ? api->ready_run(L) : UV_ENOENT;
}

#endif
