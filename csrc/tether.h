/* tether.h - the public C API of tether: embedding tether in a host program */
#ifndef TETHER_H
#define TETHER_H

#include "lua.h"
#include <uv.h>

#define TETHER_VERSION "0.1.0"

/*
** Open the module: pushes the `tether.core` table.  Registered by
** `require("tether.core")`; a host may also call it through luaL_requiref.
*/
int luaopen_tether_core(lua_State *L);

/*
** Use `loop` instead of uv_default_loop() for every tether.run in the Lua
** state `L`.  Call it before luaopen_tether_core (or at least before the
** first tether.run).  The loop must outlive every use of tether in `L`;
** tether never closes it.  Returns 0, or a negative libuv error code when a
** run is active in `L` (the loop cannot change while tasks use it).
*/
int tether_set_loop(lua_State *L, uv_loop_t *loop);

/*
** The loop that tether uses in `L` (the default loop unless a host set one).
*/
uv_loop_t *tether_get_loop(lua_State *L);

#endif
