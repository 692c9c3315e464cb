/* errgroup.c - the ErrorGroup: construction, split/subgroup/leaves, the tree rendering, matchers, except and catch */
#include <string.h>

#include "internal.h"

const char tt_info_key = 0;

/* except() keeps its state in stack slots above the error it handles. */
enum { X_ERR, X_HANDLERS, X_REST, X_HERRS, X_MATCHED, X_NAKED, X_I, X_CANCEL,
       X_NSLOTS };

/* ---- static helpers --------------------------------------------------- */

static int is_group(lua_State *L, tt_sched *S, int idx) {
  int r;
  idx = lua_absindex(L, idx);
  tk_push_class(L, S, TT_CLS_ERRORGROUP);
  r = tk_isinstance(L, idx, -1);
  lua_pop(L, 1);
  return r;
}

/*
** Check that the value at `idx` is a matcher: a class (not ErrorGroup), a
** Lua pattern, a predicate, or a non-empty array of matchers.  `what`
** prefixes the error message.
*/
static void check_matcher(lua_State *L, tt_sched *S, int idx, const char *what,
                          int depth) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING || lua_isfunction(L, idx)) return;
  if (tk_is_class(L, idx)) {
    if (tk_is_errorgroup_class(L, S, idx))
      luaL_error(L, "%s: tether.ErrorGroup cannot be a matcher (matchers "
                 "apply to the leaves of a group)", what);
    return;
  }
  if (lua_istable(L, idx) && depth < 16) {
    int i, n = (int)lua_rawlen(L, idx);
    if (n == 0) luaL_error(L, "%s: empty list of matchers", what);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      check_matcher(L, S, -1, what, depth + 1);
      lua_pop(L, 1);
    }
    return;
  }
  luaL_error(L, "%s: matcher expected (error class, pattern, predicate or "
             "list), got %s", what, luaL_typename(L, idx));
}

/* Does leaf `v` match matcher `m`?  Predicates may raise. */
static int match_leaf(lua_State *L, tt_sched *S, int v, int m) {
  v = lua_absindex(L, v);
  m = lua_absindex(L, m);
  if (tk_is_class(L, m)) return tk_isinstance(L, v, m);
  if (lua_type(L, m) == LUA_TSTRING) {
    int r;
    if (tk_is_cancelled(L, S, v)) return 0;
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "string");
    lua_getfield(L, -1, "find");
    tk_push_safe_tostring(L, v);
    lua_pushvalue(L, m);
    lua_call(L, 2, 1);
    r = !lua_isnil(L, -1);
    lua_pop(L, 3);
    return r;
  }
  if (lua_isfunction(L, m)) {
    int r;
    if (tk_is_cancelled(L, S, v)) return 0;
    lua_pushvalue(L, m);
    lua_pushvalue(L, v);
    lua_call(L, 1, 1);
    r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
  } else {
    int i, n = (int)lua_rawlen(L, m);
    for (i = 1; i <= n; i++) {
      int r;
      lua_rawgeti(L, m, i);
      r = match_leaf(L, S, v, -1);
      lua_pop(L, 1);
      if (r) return 1;
    }
    return 0;
  }
}

/* Push a group like the one at `like` (class, message) with the errors and
** infos tables at `errs` and `infos`. */
static void new_like(lua_State *L, int like, int errs, int infos) {
  like = lua_absindex(L, like);
  errs = lua_absindex(L, errs);
  infos = lua_absindex(L, infos);
  lua_createtable(L, 0, 3);
  lua_getfield(L, like, "message");
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, errs);
  lua_setfield(L, -2, "errors");
  lua_pushvalue(L, infos);
  lua_rawsetp(L, -2, &tt_info_key);
  if (lua_getmetatable(L, like)) lua_setmetatable(L, -2);
}

static void append(lua_State *L, int list, int val) {
  int n = tk_len_n(L, list) + 1;
  lua_pushvalue(L, val);
  lua_rawseti(L, list, n);
  lua_pushinteger(L, n);
  lua_setfield(L, list, "n");
}

/*
** Split the group at `eg` by matcher `m`: push match, rest (each a group
** with the same nesting, message and class, or nil).
*/
static void split(lua_State *L, tt_sched *S, int eg, int m) {
  int i, n, base;
  eg = lua_absindex(L, eg);
  m = lua_absindex(L, m);
  luaL_checkstack(L, 12, "error groups nested too deeply");
  lua_getfield(L, eg, "errors");          /* base: errors */
  base = lua_gettop(L);
  if (!lua_istable(L, base)) luaL_error(L, "malformed ErrorGroup (no errors)");
  if (lua_rawgetp(L, eg, &tt_info_key) != LUA_TTABLE) {   /* base+1: infos */
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_newtable(L); lua_newtable(L);       /* base+2, +3: match errors, infos */
  lua_newtable(L); lua_newtable(L);       /* base+4, +5: rest errors, infos */
  n = tk_len_n(L, base);
  for (i = 1; i <= n; i++) {
    int e, info, mn, rn;
    lua_rawgeti(L, base, i);
    e = lua_gettop(L);
    lua_rawgeti(L, base + 1, i);
    info = lua_gettop(L);
    mn = tk_len_n(L, base + 2) + 1;
    rn = tk_len_n(L, base + 4) + 1;
    if (is_group(L, S, e)) {
      split(L, S, e, m);                  /* sub-match, sub-rest */
      if (!lua_isnil(L, -2)) {
        append(L, base + 2, -2);
        lua_pushvalue(L, info);
        lua_rawseti(L, base + 3, mn);
      }
      if (!lua_isnil(L, -1)) {
        append(L, base + 4, -1);
        lua_pushvalue(L, info);
        lua_rawseti(L, base + 5, rn);
      }
      lua_pop(L, 2);
    } else if (match_leaf(L, S, e, m)) {
      append(L, base + 2, e);
      lua_pushvalue(L, info);
      lua_rawseti(L, base + 3, mn);
    } else {
      append(L, base + 4, e);
      lua_pushvalue(L, info);
      lua_rawseti(L, base + 5, rn);
    }
    lua_settop(L, base + 5);
  }
  if (tk_len_n(L, base + 2) > 0) new_like(L, eg, base + 2, base + 3);
  else lua_pushnil(L);
  if (tk_len_n(L, base + 4) > 0) new_like(L, eg, base + 4, base + 5);
  else lua_pushnil(L);
  lua_replace(L, base + 1);
  lua_replace(L, base);
  lua_settop(L, base + 1);
}

static void leaves(lua_State *L, tt_sched *S, int eg, int out) {
  int i, n;
  lua_getfield(L, eg, "errors");
  n = tk_len_n(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (is_group(L, S, -1)) leaves(L, S, lua_gettop(L), out);
    else append(L, out, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Add `s` to the parts table at `parts`, each line after the first
** prefixed by `indent`. */
static void add_indented(lua_State *L, int parts, const char *s,
                         const char *indent) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (; *s; s++) {
    luaL_addchar(&b, *s);
    if (*s == '\n') luaL_addstring(&b, indent);
  }
  luaL_pushresult(&b);
  lua_rawseti(L, parts, (lua_Integer)lua_rawlen(L, parts) + 1);
}

static void add_part(lua_State *L, int parts) {
  lua_rawseti(L, parts, (lua_Integer)lua_rawlen(L, parts) + 1);
}

/* Add "spawned at f.lua:12 by 'parent' < 'root'" for the info at `info`,
** where it says so. */
static void add_origin(lua_State *L, int info, int parts, const char *sub) {
  int top = lua_gettop(L), i, n = 0;
  luaL_checkstack(L, 8, "error info");
  lua_pushstring(L, "");                          /* the text so far */
  if (lua_getfield(L, info, "spawned_at") == LUA_TSTRING) {
    lua_pushfstring(L, "spawned at %s", lua_tostring(L, -1));
    lua_replace(L, top + 1);
    n++;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, info, "parents") == LUA_TTABLE) {
    int np = (int)lua_rawlen(L, -1);
    for (i = 1; i <= np && i <= 32; i++) {
      if (lua_rawgeti(L, top + 2, i) != LUA_TSTRING) {
        lua_pop(L, 1);
        continue;
      }
      lua_pushfstring(L, "%s%s'%s'", lua_tostring(L, top + 1),
                      i == 1 ? (n ? " by " : "in a task of ") : " < ",
                      lua_tostring(L, -1));
      lua_replace(L, top + 1);
      lua_pop(L, 1);
      n++;
    }
  }
  if (n) {
    lua_pushfstring(L, "\n%s%s", sub, lua_tostring(L, top + 1));
    add_part(L, parts);
  }
  lua_settop(L, top);
}

/* The number of leaves under the group at `eg`. */
static int count_leaves(lua_State *L, tt_sched *S, int eg, int depth) {
  int i, n, c = 0;
  luaL_checkstack(L, 4, "error groups nested too deeply");
  lua_getfield(L, eg, "errors");
  n = lua_istable(L, -1) ? tk_len_n(L, -1) : 0;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    c += is_group(L, S, -1) && depth < 200
             ? count_leaves(L, S, lua_gettop(L), depth + 1) : 1;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return c;
}

/* NOTE: as CPython's traceback module renders big exception groups: the
** first 15 errors of each group and 10 levels of nesting are shown, then
** "... and N more errors"; eg.errors keeps them all. */
#define RENDER_WIDTH 15
#define RENDER_DEPTH 10

/* Render the group at `eg` into `parts`, its lines indented by `depth`. */
static void render(lua_State *L, tt_sched *S, int eg, int parts, int depth) {
  int i, n, shown;
  char indent[64];
  int w = depth * 4 < 56 ? depth * 4 : 56;
  memset(indent, ' ', (size_t)w);
  indent[w] = '\0';
  luaL_checkstack(L, 10, "error groups nested too deeply");
  lua_getfield(L, eg, "errors");
  n = lua_istable(L, -1) ? tk_len_n(L, -1) : 0;
  if (lua_rawgetp(L, eg, &tt_info_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  if (lua_getmetatable(L, eg)) {
    lua_getfield(L, -1, "name");
    lua_remove(L, -2);
  } else {
    lua_pushliteral(L, "ErrorGroup");
  }
  lua_getfield(L, eg, "message");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "");
  } else {
    tk_push_safe_tostring(L, -1);
    lua_remove(L, -2);
  }
  lua_pushfstring(L, "%s: %s (%d sub-error%s)", lua_tostring(L, -2),
                  lua_tostring(L, -1), n, n == 1 ? "" : "s");
  add_part(L, parts);
  lua_pop(L, 2);
  shown = n > RENDER_WIDTH ? RENDER_WIDTH : n;
  for (i = 1; i <= shown; i++) {
    int e, info;
    lua_rawgeti(L, -2, i);
    e = lua_gettop(L);
    lua_rawgeti(L, -2, i);
    info = lua_gettop(L);
    lua_pushfstring(L, "\n%s  [%d] ", indent, i);
    add_part(L, parts);
    if (lua_istable(L, info)) {
      lua_getfield(L, info, "task");
      if (lua_isstring(L, -1)) {
        lua_pushfstring(L, "in task '%s': ", lua_tostring(L, -1));
        add_part(L, parts);
      }
      lua_pop(L, 1);
    }
    if (is_group(L, S, e) && depth + 1 >= RENDER_DEPTH) {
      int c = count_leaves(L, S, e, 0);
      lua_pushfstring(L, "... and %d more error%s (nested more than %d levels "
                      "deep)", c, c == 1 ? "" : "s", RENDER_DEPTH);
      add_part(L, parts);
    } else if (is_group(L, S, e)) {
      render(L, S, e, parts, depth + 1);
    } else {
      char sub[72];
      snprintf(sub, sizeof sub, "%s      ", indent);
      tk_push_safe_tostring(L, e);
      add_indented(L, parts, lua_tostring(L, -1), sub);
      lua_pop(L, 1);
      if (lua_istable(L, info)) add_origin(L, info, parts, sub);
      if (lua_istable(L, info)) {
        lua_getfield(L, info, "traceback");
        if (lua_isstring(L, -1)) {
          lua_pushfstring(L, "\n%s", sub);
          add_part(L, parts);
          add_indented(L, parts, lua_tostring(L, -1), sub);
        }
        lua_pop(L, 1);
      }
    }
    lua_settop(L, info - 2);
  }
  if (n > shown) {
    lua_pushfstring(L, "\n%s  ... and %d more error%s", indent, n - shown,
                    n - shown == 1 ? "" : "s");
    add_part(L, parts);
  }
  lua_pop(L, 2);
}

/* ---- core functions --------------------------------------------------- */

/* Push a new tether.ErrorGroup with errors and infos tables at the indexes. */
void tk_new_errorgroup(lua_State *L, tt_sched *S, const char *msg, int errs,
                       int infos) {
  errs = lua_absindex(L, errs);
  infos = lua_absindex(L, infos);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  if (lua_getfield(L, errs, "n") == LUA_TNIL) {
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, errs));
    lua_setfield(L, errs, "n");
  }
  lua_pop(L, 1);
  lua_pushvalue(L, errs);
  lua_setfield(L, -2, "errors");
  lua_pushvalue(L, infos);
  lua_rawsetp(L, -2, &tt_info_key);
  tk_push_class(L, S, TT_CLS_ERRORGROUP);
  lua_setmetatable(L, -2);
}

/*
** A scope catches its own Cancelled and the error at `idx` passes it: if
** that is an ErrorGroup with Cancelled leaves, replace it by the group of
** the other leaves (same nesting and messages) and return 1; when every
** leaf is a Cancelled, replace it by the first of them and return 2.
** Otherwise leave it and return 0.  May raise (memory).
*/
int tk_eg_drop_cancelled(lua_State *L, tt_sched *S, int idx) {
  idx = lua_absindex(L, idx);
  if (!is_group(L, S, idx)) return 0;
  tk_push_class(L, S, TT_CLS_CANCELLED);
  split(L, S, idx, -1);                   /* class, match, rest */
  if (lua_isnil(L, -2)) {
    lua_pop(L, 3);
    return 0;
  }
  if (!lua_isnil(L, -1)) {
    lua_replace(L, idx);
    lua_pop(L, 2);
    return 1;
  }
  lua_pop(L, 1);
  while (is_group(L, S, -1)) {            /* the first leaf of the match */
    lua_getfield(L, -1, "errors");
    lua_rawgeti(L, -1, 1);
    lua_replace(L, -3);
    lua_pop(L, 1);
  }
  lua_replace(L, idx);
  lua_pop(L, 1);
  return 2;
}

/* ErrorGroup(message, errors): the constructor, for class `cls` (an
** ErrorGroup class) at index 1. */
int tk_errorgroup_new(lua_State *L, int cls) {
  int i, n;
  if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TSTRING)
    return luaL_error(L, "bad argument #1 to 'ErrorGroup' (message: string "
                      "expected, got %s)", luaL_typename(L, 2));
  if (!lua_istable(L, 3))
    return luaL_error(L, "bad argument #2 to 'ErrorGroup' (errors: array "
                      "expected, got %s)", luaL_typename(L, 3));
  n = tk_len_n(L, 3);
  if (n < 1)
    return luaL_error(L, "bad argument #2 to 'ErrorGroup' (errors: non-empty "
                      "array expected, got an empty one)");
  lua_createtable(L, 0, 3);
  if (!lua_isnoneornil(L, 2)) {
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "message");
  }
  lua_createtable(L, n, 1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 3, i);
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  lua_setfield(L, -2, "errors");
  lua_newtable(L);
  lua_rawsetp(L, -2, &tt_info_key);
  lua_pushvalue(L, cls);
  lua_setmetatable(L, -2);
  return 1;
}

/* ---- ErrorGroup methods ----------------------------------------------- */

/* Self of ErrorGroup method `what` (as "eg:split"). */
static void check_eg(lua_State *L, tt_sched *S, const char *what) {
  if (!is_group(L, S, 1))
    luaL_error(L, "bad self for '%s' (tether.ErrorGroup expected, got %s); "
               "call it as a method", what, luaL_typename(L, 1));
}

/* eg:split(matcher) -> match, rest */
static int l_eg_split(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  check_eg(L, S, "eg:split");
  if (lua_isnone(L, 2)) tk_argerror(L, 1, "eg:split", "matcher expected");
  check_matcher(L, S, 2, "bad argument #1 to 'eg:split'", 0);
  split(L, S, 1, 2);
  return 2;
}

/* eg:subgroup(matcher) -> match */
static int l_eg_subgroup(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  check_eg(L, S, "eg:subgroup");
  if (lua_isnone(L, 2)) tk_argerror(L, 1, "eg:subgroup", "matcher expected");
  check_matcher(L, S, 2, "bad argument #1 to 'eg:subgroup'", 0);
  split(L, S, 1, 2);
  lua_pop(L, 1);
  return 1;
}

/* eg:leaves() -> flat array (with n) */
static int l_eg_leaves(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  int out, n;
  check_eg(L, S, "eg:leaves");
  lua_newtable(L);
  out = lua_gettop(L);
  lua_pushinteger(L, 0);
  lua_setfield(L, out, "n");
  leaves(L, S, 1, out);
  /* NOTE: the count (a nil leaf leaves a hole) is read through a
     metatable, so that the array compares equal to a plain list. */
  n = tk_len_n(L, out);
  lua_pushnil(L);
  lua_setfield(L, out, "n");
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, out);
  return 1;
}

/* eg:info(i) -> { task = name, traceback = text } or nil */
static int l_eg_info(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  lua_Integer i;
  int isint;
  check_eg(L, S, "eg:info");
  i = lua_tointegerx(L, 2, &isint);
  if (!isint || lua_type(L, 2) != LUA_TNUMBER) {
    lua_pushfstring(L, "integer expected, got %s", luaL_typename(L, 2));
    tk_argerror(L, 1, "eg:info", lua_tostring(L, -1));
  }
  if (lua_rawgetp(L, 1, &tt_info_key) != LUA_TTABLE) return 0;
  lua_rawgeti(L, -1, i);
  return 1;
}

/* tostring(eg): the whole tree */
int l_errorgroup_tostring(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  int parts;
  luaL_Buffer b;
  int i, n;
  lua_settop(L, 1);
  lua_newtable(L);
  parts = lua_gettop(L);
  render(L, S, 1, parts, 0);
  n = (int)lua_rawlen(L, parts);
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, parts, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  return 1;
}

/* ---- except and catch ------------------------------------------------- */

static void check_handlers(lua_State *L, tt_sched *S, int idx,
                           const char *fname) {
  int i, n;
  char what[96];
  if (!lua_istable(L, idx))
    luaL_error(L, "bad argument #%d to '%s' (table of handlers expected, got "
               "%s)", idx, fname, luaL_typename(L, idx));
  n = (int)lua_rawlen(L, idx);
  lua_pushnil(L);                       /* only the array part: no map */
  while (lua_next(L, idx)) {
    lua_Integer k;
    int isint;
    lua_pop(L, 1);
    k = lua_tointegerx(L, -1, &isint);
    if (lua_type(L, -1) != LUA_TNUMBER || !isint || k < 1 || k > n) {
      lua_pushfstring(L, "handlers: an array of { matcher, function } pairs "
                      "expected, got a table with a key of type %s (write "
                      "{ { matcher, function }, ... })", luaL_typename(L, -1));
      tk_argerror(L, idx, fname, lua_tostring(L, -1));
    }
  }
  for (i = 1; i <= n; i++) {
    snprintf(what, sizeof what, "bad argument #%d to '%s' (handler %d)", idx,
             fname, i);
    if (lua_rawgeti(L, idx, i) != LUA_TTABLE)
      luaL_error(L, "%s: { matcher, function } expected, got %s", what,
                 luaL_typename(L, -1));
    lua_rawgeti(L, -1, 1);
    if (lua_isnil(L, -1)) luaL_error(L, "%s: matcher missing", what);
    check_matcher(L, S, -1, what, 0);
    lua_rawgeti(L, -2, 2);
    if (!tk_is_callable(L, -1))
      luaL_error(L, "%s: function expected as its second item, got %s", what,
                 luaL_typename(L, -1));
    lua_pop(L, 3);
  }
}

static int split_protected(lua_State *L) {
  tt_sched *S = lua_touserdata(L, 3);
  lua_settop(L, 2);
  split(L, S, 1, 2);
  return 2;
}

static int tk_except_loop(lua_State *L, int base);

/* A handler returned (status) or raised: keep what it raised. */
static void except_handled(lua_State *L, tt_sched *S, int base, int status) {
  if (status == LUA_OK || status == LUA_YIELD) {
    lua_settop(L, base + X_NSLOTS - 1);
    return;
  }
  if (tk_is_cancelled(L, S, -1)) {
    if (lua_isnil(L, base + X_CANCEL)) lua_replace(L, base + X_CANCEL);
  } else {
    append(L, base + X_HERRS, -1);
  }
  lua_settop(L, base + X_NSLOTS - 1);
}

static int k_except(lua_State *L, int status, lua_KContext base) {
  except_handled(L, TT_UPSCHED(L), (int)base, status);
  return tk_except_loop(L, (int)base);
}

static int tk_except_finish(lua_State *L, tt_sched *S, int base) {
  int nh = tk_len_n(L, base + X_HERRS);
  int naked = lua_toboolean(L, base + X_NAKED);
  int matched = lua_toboolean(L, base + X_MATCHED);
  int rest_nil = lua_isnil(L, base + X_REST);
  if (nh == 0) {
    if (rest_nil) {
      if (!lua_isnil(L, base + X_CANCEL)) {
        lua_pushvalue(L, base + X_CANCEL);
        return lua_error(L);
      }
      return 0;
    }
    lua_pushvalue(L, (naked || !matched) ? base + X_ERR : base + X_REST);
    tk_reraise_mark(L, S);
    return lua_error(L);
  }
  if (!rest_nil)
    append(L, base + X_HERRS,
           (naked || !matched) ? base + X_ERR : base + X_REST);
  lua_newtable(L);
  tk_new_errorgroup(L, S, "errors raised while handling errors",
                    base + X_HERRS, -1);
  return lua_error(L);
}

static int tk_except_loop(lua_State *L, int base) {
  tt_sched *S = TT_UPSCHED(L);
  for (;;) {
    int i = (int)lua_tointeger(L, base + X_I) + 1;
    lua_pushinteger(L, i);
    lua_replace(L, base + X_I);
    if (i > (int)lua_rawlen(L, base + X_HANDLERS) || lua_isnil(L, base + X_REST))
      break;
    lua_rawgeti(L, base + X_HANDLERS, i);          /* handler */
    lua_pushcfunction(L, split_protected);
    lua_pushvalue(L, base + X_REST);
    lua_rawgeti(L, -3, 1);
    lua_pushlightuserdata(L, S);
    if (lua_pcall(L, 3, 2, 0) != LUA_OK) {          /* a matcher raised */
      except_handled(L, S, base, LUA_ERRRUN);
      continue;
    }
    lua_replace(L, base + X_REST);                  /* handler, match */
    if (lua_isnil(L, -1)) {
      lua_settop(L, base + X_NSLOTS - 1);
      continue;
    }
    lua_pushboolean(L, 1);
    lua_replace(L, base + X_MATCHED);
    lua_rawgeti(L, -2, 2);
    lua_insert(L, -2);                              /* handler, fn, match */
    except_handled(L, S, base,
                   lua_pcallk(L, 1, 0, 0, base, k_except));
  }
  return tk_except_finish(L, S, base);
}

/* Handle the error at `base` with the handlers at base+1 (already checked). */
static int tk_except(lua_State *L, tt_sched *S, int base) {
  int naked;
  lua_settop(L, base + 1);
  naked = !is_group(L, S, base);
  if (naked) {                                     /* a group of one */
    lua_newtable(L);
    lua_pushvalue(L, base);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, 1);
    lua_setfield(L, -2, "n");
    lua_newtable(L);
    tk_new_errorgroup(L, S, "", -2, -1);
    lua_replace(L, -3);
    lua_pop(L, 1);
  } else {
    lua_pushvalue(L, base);
  }
  lua_newtable(L);                                 /* X_HERRS */
  lua_pushboolean(L, 0);                           /* X_MATCHED */
  lua_pushboolean(L, naked);                       /* X_NAKED */
  lua_pushinteger(L, 0);                           /* X_I */
  lua_pushnil(L);                                  /* X_CANCEL */
  return tk_except_loop(L, base);
}

/* tether.except(err, handlers) */
static int l_except(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  luaL_checkany(L, 1);
  check_handlers(L, S, 2, "tether.except");
  return tk_except(L, S, 1);
}

static int k_catch(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  if (status == LUA_OK || status == LUA_YIELD) return lua_gettop(L) - 3;
  lua_pushvalue(L, 2);                             /* 4: error, 5: handlers */
  return tk_except(L, TT_UPSCHED(L), 4);
}

/* tether.catch(fn, handlers) -> fn's results | nothing */
static int l_catch(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  if (!tk_is_callable(L, 1)) luaL_typeerror(L, 1, "function");
  check_handlers(L, S, 2, "tether.catch");
  lua_settop(L, 2);
  lua_pushcfunction(L, tt_msgh);
  lua_pushvalue(L, 1);
  return k_catch(L, lua_pcallk(L, 0, LUA_MULTRET, 3, 0, k_catch), 0);
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg eg_methods[] = {
  {"split", l_eg_split},
  {"subgroup", l_eg_subgroup},
  {"leaves", l_eg_leaves},
  {"info", l_eg_info},
  {NULL, NULL}
};

static const luaL_Reg eg_funcs[] = {
  {"except", l_except},
  {"catch", l_catch},
  {NULL, NULL}
};

void tt_errgroup_open(lua_State *L, tt_sched *S) {
  tk_push_class(L, S, TT_CLS_ERRORGROUP);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, eg_methods, 1);
  lua_pop(L, 1);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, eg_funcs, 1);
}
