/* base.c - the bottom floor: small helpers that every file of the core uses */
#include <string.h>

#include "internal.h"

/* ---- core functions --------------------------------------------------- */

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

static int l_safe_tostring(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Push tostring(value at idx), never raising: a failing __tostring gives
** a placeholder that says so. */
void tk_push_safe_tostring(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, l_safe_tostring);
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


/* Raise "bad argument #arg to 'fname' (msg)": the public name of the
** function, whatever Lua's debug info would guess. */
int tk_argerror(lua_State *L, int arg, const char *fname, const char *msg) {
  return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, fname, msg);
}

/*
** Check the options table at `arg`: none or nil means no options (returns
** 0); otherwise it must be a table whose keys are all among `keys` (a
** NULL-terminated list), else a clear error naming the function and the key.
** Returns 1 when there is a table.
*/
int tk_check_opts(lua_State *L, int arg, const char *fname,
                  const char *const keys[]) {
  if (lua_isnoneornil(L, arg)) return 0;
  if (!lua_istable(L, arg)) {
    lua_pushfstring(L, "options table expected, got %s", luaL_typename(L, arg));
    return tk_argerror(L, arg, fname, lua_tostring(L, -1));
  }
  arg = lua_absindex(L, arg);
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    int i, known = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (i = 0; keys[i]; i++)
        if (strcmp(k, keys[i]) == 0) { known = 1; break; }
    }
    if (!known) {
      int top = lua_gettop(L);
      if (lua_type(L, -1) == LUA_TSTRING)
        lua_pushfstring(L, "unknown option '%s'; known: ", lua_tostring(L, -1));
      else
        lua_pushfstring(L, "unknown option of type %s; known: ",
                        luaL_typename(L, -1));
      for (i = 0; keys[i]; i++)
        lua_pushstring(L, keys[i + 1] ? ", " : "");
      for (i = 0; keys[i]; i++) {         /* interleave: key, separator */
        lua_pushstring(L, keys[i]);
        lua_insert(L, top + 2 + 2 * i);
      }
      lua_concat(L, lua_gettop(L) - top);
      return tk_argerror(L, arg, fname, lua_tostring(L, -1));
    }
  }
  return 1;
}

/*
** A string argument for a path, host, argv element or environment entry:
** a string or a number (converted), without "\0".  `what` names it in the
** error (as "path").
*/
const char *tk_check_cstr(lua_State *L, int arg, const char *fname,
                          const char *what, size_t *len) {
  size_t n;
  const char *s;
  int ty = lua_type(L, arg);
  if (ty != LUA_TSTRING && ty != LUA_TNUMBER) {
    lua_pushfstring(L, "%s: string expected, got %s", what,
                    luaL_typename(L, arg));
    tk_argerror(L, arg, fname, lua_tostring(L, -1));
  }
  s = lua_tolstring(L, arg, &n);
  if (strlen(s) != n) {
    lua_pushfstring(L, "%s contains a NUL byte", what);
    tk_argerror(L, arg, fname, lua_tostring(L, -1));
  }
  if (len) *len = n;
  return s;
}

/* Field `key` of the options table at `idx` (0: no table), pushed; returns
** its type (LUA_TNIL when absent). */
int tk_opt_field(lua_State *L, int idx, const char *key) {
  if (idx == 0) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  return lua_getfield(L, idx, key);
}

/* Option `key` as a boolean: nil gives `def`; anything but a boolean is a
** clear error. */
int tk_opt_bool(lua_State *L, int idx, const char *key, int def,
                const char *fname) {
  int ty = tk_opt_field(L, idx, key), r = def;
  if (ty == LUA_TBOOLEAN) r = lua_toboolean(L, -1);
  else if (ty != LUA_TNIL) {
    lua_pushfstring(L, "option '%s': boolean expected, got %s", key,
                    luaL_typename(L, -1));
    tk_argerror(L, idx, fname, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  return r;
}

/* Option `key` as a number (no string coercion, not NaN): nil gives `def`. */
lua_Number tk_opt_num(lua_State *L, int idx, const char *key, lua_Number def,
                      const char *fname) {
  int ty = tk_opt_field(L, idx, key);
  lua_Number r = def;
  if (ty == LUA_TNUMBER && lua_tonumber(L, -1) == lua_tonumber(L, -1))
    r = lua_tonumber(L, -1);
  else if (ty != LUA_TNIL) {
    lua_pushfstring(L, "option '%s': number expected, got %s", key,
                    ty == LUA_TNUMBER ? "nan" : luaL_typename(L, -1));
    tk_argerror(L, idx, fname, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  return r;
}

/* Option `key` as a string without NUL (numbers converted), or NULL when
** absent.  The string stays valid while the options table holds it. */
const char *tk_opt_str(lua_State *L, int idx, const char *key,
                       const char *fname) {
  const char *s = NULL;
  int ty = tk_opt_field(L, idx, key);
  if (ty != LUA_TNIL) {
    lua_pushfstring(L, "option '%s'", key);
    lua_insert(L, -2);
    s = tk_check_cstr(L, lua_gettop(L), fname, lua_tostring(L, -2), NULL);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
  return s;
}
