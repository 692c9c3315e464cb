/* scope.c - cancel scopes: the scope tree, level-triggered cancellation, deadlines and shields */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define SCOPE_MT "tether.CancelScope"

/* A cancel scope made from Lua: cancel_scope{}, move_on_after, fail_after, shield. */
typedef struct l_scope {
  tt_scope s;
  tt_sched *S;
  double timeout;   /* counts from run; < 0 when none */
} l_scope;

enum { RUN_SCOPE, RUN_FAIL_AFTER, RUN_SHIELD };

/* ---- static helpers --------------------------------------------------- */

static void wake_tasks_of(tt_scope *s) {
  tt_task *t = s->tasks;
  if (t == NULL) return;
  do {
    tt_task *next = t->slink.next;
    if (t->state == TT_T_BLOCKED &&
        (t->wait == TT_W_SLEEP || t->wait == TT_W_TASK ||
         t->wait == TT_W_LIMIT || t->wait == TT_W_IO ||
         t->wait == TT_W_SYNC))
      ts_wake(t, 1);
    t = next;
  } while (t != s->tasks);
}

/* A child scope that an outer cancellation reaches and has not reached yet. */
static tt_scope *eligible_from(tt_scope *c, tt_scope *head) {
  if (c == NULL) return NULL;
  do {
    if (!c->shield && !c->cancel_called) return c;
    c = c->link.next;
  } while (c != head);
  return NULL;
}

static double to_seconds(tt_sched *S, uint64_t ns) {
  if (ns == TT_NEVER) return HUGE_VAL;
  return ((double)ns - (double)S->t0) / 1e9;
}

static uint64_t from_seconds(tt_sched *S, double at) {
  double now = (double)(ts_now(S) - S->t0) / 1e9;
  if (at == HUGE_VAL) return TT_NEVER;
  if (at <= now) return ts_now(S);
  return ts_deadline_after(S, at - now);
}

/* Apply a new deadline to a scope that is running. */
static void tk_scope_retime(lua_State *L, tt_sched *S, tt_scope *s) {
  if (s->cancel_called || !s->active) return;
  if (s->timer.deadline == TT_NEVER) ts_timer_stop(S, &s->timer);
  else if (s->timer.deadline <= ts_now(S)) ts_cancel(S, s, TT_REASON_DEADLINE);
  else if (ts_timer_start(S, &s->timer, s->timer.deadline) != 0)
    luaL_error(L, "not enough memory");
}

/* ---- core functions --------------------------------------------------- */

void ts_scope_init(tt_scope *s, int kind) {
  memset(s, 0, sizeof *s);
  s->kind = (uint8_t)kind;
  s->timer.index = -1;
  s->timer.kind = TT_TIMER_DEADLINE;
  s->timer.deadline = TT_NEVER;
  s->reason_ref = s->source_ref = s->exc_ref = LUA_NOREF;
}

/* Make `s` the innermost scope of `t` (moving it between scope lists). */
void ts_task_set_scope(tt_task *t, tt_scope *s) {
  if (t->scope) TT_LIST_REMOVE(t->scope->tasks, t, slink);
  t->scope = s;
  if (s) TT_LIST_APPEND(s->tasks, t, slink);
}

/*
** Enter `s` in the running task `t`: it becomes the innermost scope, a
** child of the scope that was.  Starts its deadline.  Raises only when the
** timer heap cannot grow (and then `s` is not entered).
*/
int tk_scope_enter(lua_State *L, tt_task *t, tt_scope *s) {
  tt_sched *S = t->S;
  s->parent = t->scope;
  s->owner = t;
  s->active = s->used = 1;
  if (s->parent) TT_LIST_APPEND(s->parent->children, s, link);
  ts_task_set_scope(t, s);
  if (s->timer.deadline != TT_NEVER && !s->cancel_called) {
    if (s->timer.deadline <= ts_now(S)) {
      ts_cancel(S, s, TT_REASON_DEADLINE);
    } else if (ts_timer_start(S, &s->timer, s->timer.deadline) != 0) {
      ts_scope_exit(S, t, s);
      return luaL_error(L, "not enough memory");
    }
  }
  return 0;
}

/* Leave `s`, the innermost scope of `t`; its parent becomes innermost. */
void ts_scope_exit(tt_sched *S, tt_task *t, tt_scope *s) {
  ts_timer_stop(S, &s->timer);
  if (s->parent) TT_LIST_REMOVE(s->parent->children, s, link);
  ts_task_set_scope(t, s->parent);
  s->active = 0;
}

/* Drop what a scope keeps in the registry (reason and source texts). */
void ts_scope_release(lua_State *L, tt_scope *s) {
  luaL_unref(L, LUA_REGISTRYINDEX, s->reason_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, s->source_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, s->exc_ref);
  s->reason_ref = s->source_ref = s->exc_ref = LUA_NOREF;
}

/*
** Wake every blocked task under `s` whose wait a cancellation interrupts,
** skipping shielded subtrees and subtrees cancelled before (their tasks
** were woken then).  Iterative: nesting depth costs no C stack.
*/
void ts_wake_subtree(tt_scope *s) {
  tt_scope *x = s;
  for (;;) {
    tt_scope *c;
    wake_tasks_of(x);
    c = eligible_from(x->children, x->children);
    if (c) {
      x = c;
      continue;
    }
    while (x != s) {
      tt_scope *p = x->parent;
      tt_scope *n = x->link.next == p->children
                        ? NULL : eligible_from(x->link.next, p->children);
      if (n) break;
      x = p;
    }
    if (x == s) return;
    x = eligible_from(x->link.next, x->parent->children);
  }
}

/*
** Cancel `s`: from now on every checkpoint under it (outside shielded
** scopes) raises Cancelled, and blocked tasks there are woken.  O(tasks and
** scopes under s).  The first reason stays.  Safe in a libuv callback.
*/
void ts_cancel(tt_sched *S, tt_scope *s, int reason) {
  if (s->cancel_called) return;
  s->cancel_called = 1;
  if (s->reason == TT_REASON_NONE) s->reason = (uint8_t)reason;
  ts_timer_stop(S, &s->timer);
  if (s->active) ts_wake_subtree(s);
}

/*
** The cancelled scope that reaches scope `s`, or NULL (level-triggered).
** When several are cancelled, the outermost below the nearest shield (as in
** Trio): its Cancelled is the one raised, and it is the scope that catches
** it, so the code between the inner and the outer scope does not run.
*/
tt_scope *ts_cancelled_from(tt_scope *s) {
  tt_scope *found = NULL;
  for (; s != NULL; s = s->parent) {
    if (s->cancel_called) found = s;
    if (s->shield) break;
  }
  return found;
}

/* The cancelled scope that reaches task `t` now, or NULL. */
tt_scope *ts_cancelled(tt_task *t) {
  return ts_cancelled_from(t->scope);
}

/* Push a new tether.Cancelled saying why `s` was cancelled. */
static void tk_push_cancelled(lua_State *L, tt_sched *S, tt_scope *s) {
  tk_new_error(L, S, TT_CLS_CANCELLED, NULL);
  switch (s->reason) {
    case TT_REASON_USER: tk_push_ref(L, s->reason_ref); break;
    case TT_REASON_FAILED:
      tk_push_ref(L, s->source_ref);
      lua_pushfstring(L, "task '%s' failed", lua_tostring(L, -1));
      lua_remove(L, -2);
      break;
    case TT_REASON_DEADLINE: lua_pushliteral(L, "deadline exceeded"); break;
    case TT_REASON_INTERRUPT: lua_pushliteral(L, "interrupted"); break;
    case TT_REASON_DAEMON:
      lua_pushliteral(L, "daemon task no longer needed");
      break;
    case TT_REASON_DEADLOCK:
      lua_pushliteral(L, "deadlock: every task is blocked and nothing can "
                      "wake them");
      break;
    default: lua_pushnil(L); break;
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "reason");
  lua_setfield(L, -2, "message");
  tk_push_ref(L, s->source_ref);
  lua_setfield(L, -2, "source");
}

/*
** Raise Cancelled for `s` in the running task.  NOTE: every task under a
** cancelled group or scope gets the same Cancelled object (made once):
** cancelling N parked tasks then allocates nothing per task.
*/
int tk_raise_cancelled(lua_State *L, tt_sched *S, tt_scope *s) {
  if (s->exc_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->exc_ref);
    return lua_error(L);
  }
  tk_push_cancelled(L, S, s);
  if (s->kind != TT_SCOPE_TASK) {
    lua_pushvalue(L, -1);
    s->exc_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return lua_error(L);
}

/* Record a cancel reason given by the user (arg `idx`: string or nil). */
void tk_cancel_reason(lua_State *L, tt_sched *S, tt_scope *s, int idx) {
  if (s->cancel_called) return;
  if (!lua_isnoneornil(L, idx)) {
    lua_pushvalue(L, idx);
    s->reason_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  ts_cancel(S, s, TT_REASON_USER);
}

/* ---- running a function in a scope ------------------------------------ */

static int k_scope_run(lua_State *L, int status, lua_KContext mode) {
  l_scope *ls = lua_touserdata(L, 1);
  tt_sched *S = ls->S;
  ts_scope_exit(S, S->current, &ls->s);
  ts_scope_release(L, &ls->s);        /* nothing reads them once it is left */
  if (status == LUA_OK || status == LUA_YIELD) {
    if (mode == RUN_SCOPE) {
      lua_pushboolean(L, 1);
      lua_replace(L, 2);
      return lua_gettop(L) - 1;
    }
    return lua_gettop(L) - 2;
  }
  /* NOTE: the scope catches a Cancelled only when it is the outermost
     cancelled scope that reaches its code (Trio); it also takes its
     Cancelled out of an ErrorGroup passing through, and a group with
     nothing else in it is absorbed like a Cancelled. */
  if (ls->s.cancel_called && ts_cancelled_from(&ls->s) == &ls->s &&
      (tk_is_cancelled(L, S, -1) || tk_eg_drop_cancelled(L, S, -1) == 2)) {
    ls->s.caught = 1;
    if (mode == RUN_FAIL_AFTER) {
      char msg[80];
      snprintf(msg, sizeof msg, "fail_after: deadline of %g s exceeded",
               ls->timeout);
      tk_new_error(L, S, TT_CLS_TIMEOUT, msg);
      lua_pushnumber(L, ls->timeout);
      lua_setfield(L, -2, "timeout");
      return lua_error(L);
    }
    lua_pushboolean(L, 0);
    return 1;
  }
  tk_reraise_mark(L, S);
  return lua_error(L);
}

/* Run the function at 2 with the args above it in the scope at 1. */
static int tk_scope_run(lua_State *L, int mode, const char *op) {
  l_scope *ls = lua_touserdata(L, 1);
  tt_sched *S = ls->S;
  tt_task *t = tk_current(L, S, op);
  if (ls->s.used)
    return luaL_error(L, "%s: a cancel scope runs only once", op);
  if (ls->timeout >= 0)
    ls->s.timer.deadline = ts_deadline_after(S, ls->timeout);
  tk_scope_enter(L, t, &ls->s);
  lua_pushcfunction(L, tt_msgh);
  lua_insert(L, 2);
  return k_scope_run(L, lua_pcallk(L, lua_gettop(L) - 3, LUA_MULTRET, 2,
                                   mode, k_scope_run), mode);
}

static l_scope *tk_new_scope(lua_State *L, tt_sched *S) {
  l_scope *ls = lua_newuserdatauv(L, sizeof(l_scope), 0);
  ts_scope_init(&ls->s, TT_SCOPE_PLAIN);
  ls->S = S;
  ls->timeout = -1;
  luaL_setmetatable(L, SCOPE_MT);
  return ls;
}

static double check_seconds(lua_State *L, int arg) {
  double d = tk_checknum(L, arg);
  luaL_argcheck(L, d >= 0, arg, "non-negative number expected");
  return d;
}

/* ---- bindings --------------------------------------------------------- */

static const char *const scope_keys[] = { "timeout", "deadline", "shield",
                                           NULL };

/* tether.cancel_scope{ timeout = s | deadline = t, shield = bool } */
static int l_cancel_scope(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  l_scope *ls;
  double timeout = -1, deadline = 0;
  int shield = 0, has_deadline = 0;
  if (tk_check_opts(L, 1, "tether.cancel_scope", scope_keys)) {
    if (!lua_isnone(L, 2))
      tk_argerror(L, 2, "tether.cancel_scope", "no argument expected after "
                  "the options");
    if (lua_getfield(L, 1, "timeout") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0))
        luaL_argerror(L, 1, "'timeout' must be a non-negative number");
      timeout = lua_tonumber(L, -1);
    }
    if (lua_getfield(L, 1, "deadline") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TNUMBER ||
          lua_tonumber(L, -1) != lua_tonumber(L, -1))
        luaL_argerror(L, 1, "'deadline' must be a number");
      if (timeout >= 0)
        luaL_argerror(L, 1, "give 'timeout' or 'deadline', not both");
      deadline = lua_tonumber(L, -1);
      has_deadline = 1;
    }
    if (lua_getfield(L, 1, "shield") != LUA_TNIL) {
      if (!lua_isboolean(L, -1))
        luaL_argerror(L, 1, "'shield' must be a boolean");
      shield = lua_toboolean(L, -1);
    }
    lua_pop(L, 3);
  }
  ls = tk_new_scope(L, S);
  ls->timeout = timeout;
  ls->s.shield = (uint8_t)shield;
  if (has_deadline) ls->s.timer.deadline = from_seconds(S, deadline);
  return 1;
}

/* scope:run(fn, ...) -> true, ... | false */
static int l_scope_run(lua_State *L) {
  tk_checkself(L, TT_UPSCHED(L)->scope_mt, SCOPE_MT, "scope:run");
  if (!tk_is_callable(L, 2)) {
    lua_pushfstring(L, "function expected, got %s", luaL_typename(L, 2));
    tk_argerror(L, 1, "scope:run", lua_tostring(L, -1));
  }
  return tk_scope_run(L, RUN_SCOPE, "scope:run");
}

/* scope:cancel([reason]) */
static int l_scope_cancel(lua_State *L) {
  l_scope *ls = tk_checkself(L, TT_UPSCHED(L)->scope_mt, SCOPE_MT,
                             "scope:cancel");
  if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TSTRING) {
    lua_pushfstring(L, "reason: string or nil expected, got %s",
                    luaL_typename(L, 2));
    tk_argerror(L, 1, "scope:cancel", lua_tostring(L, -1));
  }
  tk_cancel_reason(L, ls->S, &ls->s, 2);
  return 0;
}

/* scope.deadline, scope.shield, scope.cancel_called, scope.cancelled_caught */
static int l_scope_index(lua_State *L) {
  l_scope *ls = luaL_checkudata(L, 1, SCOPE_MT);
  const char *k = lua_tostring(L, 2);
  if (k == NULL) return 0;
  if (strcmp(k, "deadline") == 0) {
    if (!ls->s.used && ls->timeout >= 0)
      lua_pushnumber(L, to_seconds(ls->S,
                                   ts_deadline_after(ls->S, ls->timeout)));
    else
      lua_pushnumber(L, to_seconds(ls->S, ls->s.timer.deadline));
  } else if (strcmp(k, "shield") == 0) {
    lua_pushboolean(L, ls->s.shield);
  } else if (strcmp(k, "cancel_called") == 0) {
    /* a deadline that has passed counts, also before the scope has run
       (as in Trio): the scope is then cancelled now */
    if (!ls->s.cancel_called && (ls->s.active || !ls->s.used) &&
        ls->s.timer.deadline != TT_NEVER &&
        ls->s.timer.deadline <= ts_now(ls->S))
      ts_cancel(ls->S, &ls->s, TT_REASON_DEADLINE);
    lua_pushboolean(L, ls->s.cancel_called);
  } else if (strcmp(k, "cancelled_caught") == 0) {
    lua_pushboolean(L, ls->s.caught);
  } else {
    luaL_getmetafield(L, 1, "__methods");
    lua_getfield(L, -1, k);
  }
  return 1;
}

static int l_scope_newindex(lua_State *L) {
  l_scope *ls = luaL_checkudata(L, 1, SCOPE_MT);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "deadline") == 0) {
    double at = lua_tonumber(L, 3);
    if (lua_type(L, 3) != LUA_TNUMBER || at != at)
      return luaL_error(L, "bad value for scope.deadline (number expected, "
                        "got %s)", luaL_typename(L, 3));
    ls->timeout = -1;
    ls->s.timer.deadline = from_seconds(ls->S, at);
    tk_scope_retime(L, ls->S, &ls->s);
  } else if (strcmp(k, "shield") == 0) {
    int was = ls->s.shield;
    if (!lua_isboolean(L, 3))
      return luaL_error(L, "bad value for scope.shield (boolean expected, "
                        "got %s)", luaL_typename(L, 3));
    ls->s.shield = (uint8_t)lua_toboolean(L, 3);
    if (was && !ls->s.shield && ls->s.active &&
        ts_cancelled_from(ls->s.parent))
      ts_wake_subtree(&ls->s);
  } else {
    return luaL_error(L, "cancel scope: field '%s' cannot be set", k);
  }
  return 0;
}

static int l_scope_gc(lua_State *L) {
  l_scope *ls = luaL_checkudata(L, 1, SCOPE_MT);
  ts_scope_release(L, &ls->s);
  return 0;
}

static int l_scope_tostring(lua_State *L) {
  l_scope *ls = luaL_checkudata(L, 1, SCOPE_MT);
  lua_pushfstring(L, "tether.CancelScope (%s%s)",
                  ls->s.active ? "running" : ls->s.used ? "done" : "new",
                  ls->s.cancel_called ? ", cancelled" : "");
  return 1;
}

/* tether.move_on_after(seconds, fn, ...) -> true, ... | false */
static int l_move_on_after(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  double d = check_seconds(L, 1);
  if (!tk_is_callable(L, 2)) luaL_typeerror(L, 2, "function");
  tk_new_scope(L, S)->timeout = d;
  lua_replace(L, 1);
  return tk_scope_run(L, RUN_SCOPE, "tether.move_on_after");
}

/* tether.fail_after(seconds, fn, ...) -> ... | raises TimeoutError */
static int l_fail_after(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  double d = check_seconds(L, 1);
  if (!tk_is_callable(L, 2)) luaL_typeerror(L, 2, "function");
  tk_new_scope(L, S)->timeout = d;
  lua_replace(L, 1);
  return tk_scope_run(L, RUN_FAIL_AFTER, "tether.fail_after");
}

/* tether.shield(fn, ...) -> ... */
static int l_shield(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  if (!tk_is_callable(L, 1)) luaL_typeerror(L, 1, "function");
  tk_new_scope(L, S)->s.shield = 1;
  lua_insert(L, 1);
  return tk_scope_run(L, RUN_SHIELD, "tether.shield");
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg scope_methods[] = {
  {"run", l_scope_run},
  {"cancel", l_scope_cancel},
  {NULL, NULL}
};

static const luaL_Reg scope_meta[] = {
  {"__index", l_scope_index},
  {"__newindex", l_scope_newindex},
  {"__gc", l_scope_gc},
  {"__tostring", l_scope_tostring},
  {NULL, NULL}
};

static const luaL_Reg scope_funcs[] = {
  {"cancel_scope", l_cancel_scope},
  {"move_on_after", l_move_on_after},
  {"fail_after", l_fail_after},
  {"shield", l_shield},
  {NULL, NULL}
};

/* Register the scope functions into the table on top of the stack. */
void tt_scope_open(lua_State *L, tt_sched *S) {
  luaL_newmetatable(L, SCOPE_MT);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, scope_meta, 1);
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, scope_methods, 1);
  lua_setfield(L, -2, "__methods");
  lua_pushvalue(L, -1);
  S->scope_mt = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, scope_funcs, 1);
}
