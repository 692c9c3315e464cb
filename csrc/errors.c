/* errors.c - error classes: tether.Error, Cancelled, TimeoutError, IOError, Interrupted, user classes */
#include <string.h>

#include "internal.h"

const char tt_class_key = 0;
static const char base_key = 0;  /* the registry holds ClassBase here */

/* ---- static helpers --------------------------------------------------- */

/* Push the class of which the value at `idx` is a direct instance, or
** nothing (returns 0) when it is not an instance of a class. */
static int push_class_of(lua_State *L, int idx) {
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  if (lua_rawgetp(L, -1, &tt_class_key) == LUA_TNIL) {
    lua_pop(L, 2);
    return 0;
  }
  lua_pop(L, 1);
  return 1;
}

/* Replace the class on top of the stack by its parent (or nil). */
static void to_parent(lua_State *L) {
  lua_pushliteral(L, "__parent");
  lua_rawget(L, -2);
  lua_remove(L, -2);
}

/* ---- core functions --------------------------------------------------- */

/* Is the value at `idx` a class table? */
int tk_is_class(lua_State *L, int idx) {
  int r;
  if (!lua_istable(L, idx)) return 0;
  r = lua_rawgetp(L, idx, &tt_class_key) != LUA_TNIL;
  lua_pop(L, 1);
  return r;
}

/* Is the value at `idx` an instance of the class at `clsidx` or of a subclass? */
int tk_isinstance(lua_State *L, int idx, int clsidx) {
  clsidx = lua_absindex(L, clsidx);
  if (!push_class_of(L, idx)) return 0;
  while (!lua_isnil(L, -1)) {
    if (lua_rawequal(L, -1, clsidx)) {
      lua_pop(L, 1);
      return 1;
    }
    to_parent(L);
  }
  lua_pop(L, 1);
  return 0;
}

void tk_push_class(lua_State *L, tt_sched *S, int cls) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->cls[cls]);
}

/* Is the value at `idx` a tether.Cancelled? */
int tk_is_cancelled(lua_State *L, tt_sched *S, int idx) {
  int r;
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  tk_push_class(L, S, TT_CLS_CANCELLED);
  r = lua_rawequal(L, -1, -2);               /* the usual case: no subclass */
  lua_pop(L, 2);
  if (r) return 1;
  idx = lua_absindex(L, idx);
  tk_push_class(L, S, TT_CLS_CANCELLED);
  r = tk_isinstance(L, idx, -1);
  lua_pop(L, 1);
  return r;
}

/* Is the value at `idx` tether.ErrorGroup or a subclass of it? */
int tk_is_errorgroup_class(lua_State *L, tt_sched *S, int idx) {
  idx = lua_absindex(L, idx);
  if (!tk_is_class(L, idx)) return 0;
  tk_push_class(L, S, TT_CLS_ERRORGROUP);
  lua_pushvalue(L, idx);
  while (!lua_isnil(L, -1)) {
    if (lua_rawequal(L, -1, -2)) {
      lua_pop(L, 2);
      return 1;
    }
    to_parent(L);
  }
  lua_pop(L, 2);
  return 0;
}

/* Push a new instance of built-in class `cls` with message `msg` (or none). */
void tk_new_error(lua_State *L, tt_sched *S, int cls, const char *msg) {
  lua_createtable(L, 0, 3);
  if (msg) {
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
  }
  tk_push_class(L, S, cls);
  lua_setmetatable(L, -2);
}

/*
** Push a new IOError (or subclass `cls`) for libuv error `err` (< 0) in
** operation `op`: fields code (libuv's name, "ENOENT"), message (its text)
** and op.  The caller adds the context (path, host, port, argv).
*/
void tk_new_ioerror(lua_State *L, tt_sched *S, int cls, int err,
                    const char *op) {
  tk_new_error(L, S, cls, err ? uv_strerror(err) : NULL);
  if (err) {
    lua_pushstring(L, uv_err_name(err));
    lua_setfield(L, -2, "code");
  }
  if (op) {
    lua_pushstring(L, op);
    lua_setfield(L, -2, "op");
  }
}

/* Make a class named `name` (on the stack at `nameidx`), parent at `pidx`
** (0: none), and push it. */
static void tk_make_class(lua_State *L, int nameidx, int pidx) {
  nameidx = lua_absindex(L, nameidx);
  if (pidx) pidx = lua_absindex(L, pidx);
  lua_createtable(L, 0, 8);
  lua_pushvalue(L, nameidx);
  lua_setfield(L, -2, "name");
  lua_pushvalue(L, nameidx);
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 1);
  lua_rawsetp(L, -2, &tt_class_key);
  if (pidx) {
    lua_pushvalue(L, pidx);
    lua_setfield(L, -2, "__parent");
    lua_getfield(L, pidx, "__tostring");      /* inherit the rendering */
  } else {
    lua_pushnil(L);
  }
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &base_key);
    lua_getfield(L, -1, "__inst_tostring");
    lua_remove(L, -2);
  }
  lua_setfield(L, -2, "__tostring");
  /* the class's own metatable: inheritance of methods, construction */
  lua_createtable(L, 0, 3);
  if (pidx) lua_pushvalue(L, pidx);
  else lua_rawgetp(L, LUA_REGISTRYINDEX, &base_key);
  lua_setfield(L, -2, "__index");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &base_key);
  lua_getfield(L, -1, "__class_call");
  lua_setfield(L, -3, "__call");
  lua_getfield(L, -1, "__class_tostring");
  lua_setfield(L, -3, "__tostring");
  lua_pop(L, 1);
  lua_setmetatable(L, -2);
}

/* ---- bindings --------------------------------------------------------- */

/* tether.error_class(name [, parent]) -> class */
static int l_error_class(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  luaL_argexpected(L, lua_type(L, 1) == LUA_TSTRING, 1, "string");
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    tk_push_class(L, S, TT_CLS_ERROR);
  } else {
    luaL_argexpected(L, tk_is_class(L, 2), 2, "error class");
    tk_push_class(L, S, TT_CLS_CANCELLED);
    if (lua_rawequal(L, 2, -1))
      return luaL_error(L, "tether.error_class: tether.Cancelled cannot be "
                        "subclassed (only tether raises cancellations)");
    lua_settop(L, 2);
  }
  tk_make_class(L, 1, 2);
  return 1;
}

/* Cls(message [, fields]) or Cls{ message = ..., field = ... } -> instance */
static int l_class_call(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  int fields = 0, nargs = lua_gettop(L);
  if (tk_is_errorgroup_class(L, S, 1)) return tk_errorgroup_new(L, 1);
  tk_push_class(L, S, TT_CLS_CANCELLED);
  if (lua_rawequal(L, 1, -1))
    return luaL_error(L, "tether.Cancelled cannot be constructed: only "
                      "tether raises cancellations (a failure can never pass "
                      "for one)");
  lua_pop(L, 1);
  lua_settop(L, 3);
  if (lua_istable(L, 2) && nargs < 3) fields = 2;
  else if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    fields = 3;
  }
  lua_createtable(L, 0, 4);
  if (fields) {
    lua_pushnil(L);
    while (lua_next(L, fields)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
  }
  if (fields != 2 && !lua_isnoneornil(L, 2)) {
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "message");
  }
  lua_pushvalue(L, 1);
  lua_setmetatable(L, -2);
  return 1;
}

/* Cls:is(value) -> boolean */
static int l_class_is(lua_State *L) {
  if (!tk_is_class(L, 1))
    luaL_error(L, "bad self for 'Cls:is' (error class expected, got %s); "
               "call it as a method", luaL_typename(L, 1));
  lua_pushboolean(L, tk_isinstance(L, 2, 1));
  return 1;
}

/* tostring(instance) -> "Name: message" */
static int l_inst_tostring(lua_State *L) {
  if (lua_getmetatable(L, 1)) {
    lua_getfield(L, -1, "name");
    lua_remove(L, -2);
  }
  if (!lua_isstring(L, -1)) lua_pushliteral(L, "Error");
  if (lua_getfield(L, 1, "message") == LUA_TNIL) {
    lua_pop(L, 1);
    return 1;
  }
  luaL_tolstring(L, -1, NULL);
  lua_pushfstring(L, "%s: %s", lua_tostring(L, -3), lua_tostring(L, -1));
  return 1;
}

/* Push tostring of field `key` of the table at 1, with `pre` before it; 1 if
** the field exists (the pieces are then on the stack), else 0. */
static int add_field(lua_State *L, const char *key, const char *pre) {
  if (lua_getfield(L, 1, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushstring(L, pre);
  luaL_tolstring(L, -2, NULL);
  lua_remove(L, -3);
  return 2;
}

/* tostring(io_error) -> "IOError: ENOENT: no such file or directory (open 'x')" */
static int l_ioerror_tostring(lua_State *L) {
  int n = 0;
  lua_settop(L, 1);
  if (lua_getmetatable(L, 1)) {
    lua_getfield(L, -1, "name");
    lua_remove(L, -2);
  }
  if (!lua_isstring(L, -1)) {
    lua_settop(L, 1);
    lua_pushliteral(L, "IOError");
  }
  n = 1;
  n += add_field(L, "code", ": ");
  n += add_field(L, "message", ": ");
  if (lua_getfield(L, 1, "op") == LUA_TSTRING) {
    lua_pushliteral(L, " (");
    lua_insert(L, -2);
    n += 2;
    if (add_field(L, "path", " '")) {
      lua_pushliteral(L, "'");
      n += 3;
    }
    if (add_field(L, "host", " ")) {
      n += 2;
      n += add_field(L, "port", ":");
    }
    if (lua_getfield(L, 1, "argv") == LUA_TTABLE) {
      int argv = lua_gettop(L);
      lua_Integer i, len = (lua_Integer)lua_rawlen(L, argv);
      lua_pushliteral(L, " '");
      for (i = 1; i <= len; i++) {
        if (i > 1) lua_pushliteral(L, " ");
        lua_rawgeti(L, argv, i);
        luaL_tolstring(L, -1, NULL);
        lua_remove(L, -2);
        if (i > 1) lua_concat(L, 2);
        lua_concat(L, 2);
      }
      lua_pushliteral(L, "'");
      lua_concat(L, 2);
      lua_remove(L, argv);
      n++;
    } else {
      lua_pop(L, 1);
    }
    lua_pushliteral(L, ")");
    n++;
  } else {
    lua_pop(L, 1);
  }
  lua_concat(L, n);
  return 1;
}

static int l_class_tostring(lua_State *L) {
  lua_getfield(L, 1, "name");
  lua_pushfstring(L, "tether error class %s", lua_tostring(L, -1));
  return 1;
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg base_funcs[] = {
  {"is", l_class_is},
  {"__inst_tostring", l_inst_tostring},
  {"__class_call", l_class_call},
  {"__class_tostring", l_class_tostring},
  {NULL, NULL}
};

static void builtin(lua_State *L, tt_sched *S, int cls, const char *name,
                    int parent) {
  lua_pushstring(L, name);
  if (parent >= 0) tk_push_class(L, S, parent);
  tk_make_class(L, -1 - (parent >= 0), parent >= 0 ? -1 : 0);
  lua_pushvalue(L, -1);
  S->cls[cls] = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -3 - (parent >= 0), name);
  lua_pop(L, 1 + (parent >= 0));
}

/* Create the built-in classes into the table on top of the stack. */
void tt_errors_open(lua_State *L, tt_sched *S) {
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, base_funcs, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &base_key);
  builtin(L, S, TT_CLS_ERROR, "Error", -1);
  builtin(L, S, TT_CLS_CANCELLED, "Cancelled", -1);
  builtin(L, S, TT_CLS_INTERRUPTED, "Interrupted", -1);
  builtin(L, S, TT_CLS_TIMEOUT, "TimeoutError", TT_CLS_ERROR);
  builtin(L, S, TT_CLS_IO, "IOError", TT_CLS_ERROR);
  builtin(L, S, TT_CLS_ERRORGROUP, "ErrorGroup", TT_CLS_ERROR);
  builtin(L, S, TT_CLS_PROCESS, "ProcessError", TT_CLS_ERROR);
  builtin(L, S, TT_CLS_END_OF_CHANNEL, "EndOfChannel", TT_CLS_ERROR);
  builtin(L, S, TT_CLS_WOULD_BLOCK, "WouldBlock", TT_CLS_ERROR);
  tk_push_class(L, S, TT_CLS_IO);          /* before its subclasses copy it */
  lua_pushcfunction(L, l_ioerror_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  builtin(L, S, TT_CLS_CLOSED, "ClosedResourceError", TT_CLS_IO);
  builtin(L, S, TT_CLS_BROKEN, "BrokenResourceError", TT_CLS_IO);
  builtin(L, S, TT_CLS_BUSY, "BusyResourceError", TT_CLS_IO);
  builtin(L, S, TT_CLS_INCOMPLETE, "IncompleteReadError", TT_CLS_IO);
  tk_push_class(L, S, TT_CLS_ERRORGROUP);
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_errorgroup_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_error_class, 1);
  lua_setfield(L, -2, "error_class");
}
