/* dump.c - tether.dump(): a readable tree of the live tasks, groups and scopes */
#include <stdio.h>

#include "internal.h"

/* ---- static helpers --------------------------------------------------- */

static void add(lua_State *L, int parts) {
  lua_rawseti(L, parts, (lua_Integer)lua_rawlen(L, parts) + 1);
}

/* Push "file:line" of the innermost Lua frame of `co`; for a task that
** runs only C functions (g:spawn(tether.sleep, 1)), the C function it
** runs, by the task's name. */
static void push_where(lua_State *L, lua_State *co, tt_task *t) {
  lua_Debug ar;
  int level;
  for (level = 0; lua_getstack(co, level, &ar); level++) {
    lua_getinfo(co, "Sl", &ar);
    if (ar.currentline > 0) {
      lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
      return;
    }
  }
  tk_push_task_name(L, t);
  lua_pushfstring(L, "a C function (no Lua frame in task '%s')",
                  lua_tostring(L, -1));
  lua_remove(L, -2);
}

/* Push what a blocked task waits for, in words. */
static void push_waits_for(lua_State *L, tt_task *t) {
  if (t->wait == TT_W_TASK && t->wlist) {
    tt_task *o = (tt_task *)((char *)t->wlist - offsetof(tt_task, waiters));
    tk_push_task_name(L, o);
    lua_pushfstring(L, "t:wait (waits for task '%s')", lua_tostring(L, -1));
    lua_remove(L, -2);
  } else if (t->wait == TT_W_JOIN && t->scope &&
             t->scope->kind == TT_SCOPE_GROUP) {
    tt_group *g = (tt_group *)t->scope;
    tk_push_ref(L, g->name_ref);
    lua_pushfstring(L, "with_group (waits for the %d task%s of group '%s')",
                    g->nlive, g->nlive == 1 ? "" : "s", lua_tostring(L, -1));
    lua_remove(L, -2);
  } else if (t->wait == TT_W_IO) {
    tk_io_push_wait(L, t);
  } else {
    lua_pushstring(L, ts_wait_name(t->wait));
  }
}

static void dump_task(lua_State *L, tt_sched *S, tt_task *t, int parts,
                      const char *pad) {
  const char *st = t->state == TT_T_READY ? "ready"
                   : t->state == TT_T_RUNNING ? "running"
                   : t->state == TT_T_BLOCKED ? "blocked" : "done";
  tk_push_task_name(L, t);
  lua_pushfstring(L, "%stask '%s' [%s%s%s]", pad, lua_tostring(L, -1), st,
                  t->daemon ? ", daemon" : "",
                  t->root.cancel_called ? ", cancelled" : "");
  lua_remove(L, -2);
  add(L, parts);
  if (t->state == TT_T_BLOCKED &&
      (t->wait == TT_W_SYNC || t->wait == TT_W_RELOCK)) {
    tk_sync_describe(L, t);
    push_where(L, t->co, t);
    lua_pushfstring(L, " waits on %s at %s", lua_tostring(L, -2),
                    lua_tostring(L, -1));
    lua_remove(L, -2);
    lua_remove(L, -2);
    add(L, parts);
  } else if (t->state == TT_T_BLOCKED) {
    char left[64] = "";
    if (t->wait == TT_W_SLEEP && !t->forever) {
      uint64_t now = ts_now(S);
      double s = t->timer.deadline > now
                     ? (double)(t->timer.deadline - now) / 1e9 : 0;
      snprintf(left, sizeof left, " (%.3f s left)", s);
    } else if (t->wait == TT_W_SLEEP) {
      snprintf(left, sizeof left, " (forever)");
    }
    push_waits_for(L, t);
    push_where(L, t->co, t);
    lua_pushfstring(L, " blocked in %s%s at %s", lua_tostring(L, -2), left,
                    lua_tostring(L, -1));
    lua_remove(L, -2);
    lua_remove(L, -2);
    add(L, parts);
  }
  (void)S;
}

static void dump_scope(lua_State *L, tt_sched *S, tt_scope *s, int parts,
                       int depth) {
  char pad[130];
  int w = depth * 2 < 128 ? depth * 2 : 128;
  tt_scope *c;
  snprintf(pad, sizeof pad, "\n%*s", w, "");
  luaL_checkstack(L, 8, "dump");
  if (s->kind == TT_SCOPE_TASK) {
    dump_task(L, S, s->owner, parts, pad);
  } else if (s->kind == TT_SCOPE_GROUP) {
    tt_group *g = (tt_group *)s;
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->name_ref);
    lua_pushfstring(L, "%sgroup '%s' (%d task%s%s%s)", pad, lua_tostring(L, -1),
                    g->nlive, g->nlive == 1 ? "" : "s",
                    g->state == TT_G_JOINING ? ", joining" : "",
                    s->cancel_called ? ", cancelled" : "");
    lua_remove(L, -2);
    add(L, parts);
  } else {
    char dl[64] = "";
    if (s->timer.deadline != TT_NEVER) {
      uint64_t now = ts_now(S);
      snprintf(dl, sizeof dl, ", deadline in %.3f s",
               s->timer.deadline > now
                   ? (double)(s->timer.deadline - now) / 1e9 : 0.0);
    }
    lua_pushfstring(L, "%scancel scope (%s%s%s)", pad,
                    s->shield ? "shield" : "plain", dl,
                    s->cancel_called ? ", cancelled" : "");
    add(L, parts);
  }
  if ((c = s->children) == NULL) return;
  if (depth > 60) {
    lua_pushfstring(L, "%s  ...", pad);
    add(L, parts);
    return;
  }
  do {
    dump_scope(L, S, c, parts, depth + 1);
    c = c->link.next;
  } while (c != s->children);
}

/* ---- bindings --------------------------------------------------------- */

/* Push the dump of every live root of `S` (and the open I/O objects). */
void tk_dump_push(lua_State *L, tt_sched *S) {
  luaL_Buffer b;
  int i, n, base = lua_gettop(L) + 1;
  lua_newtable(L);                                    /* base: the lines */
  lua_pushfstring(L, "tether: %d live task%s", S->ntasks,
                  S->ntasks == 1 ? "" : "s");
  add(L, base);
  if (S->roots) {                                     /* every live root */
    tt_task *r = S->roots;
    do {
      dump_scope(L, S, &r->root, base, 1);
      r = r->glink.next;
    } while (r != S->roots);
  }
  tk_io_dump(L, S, base);
  n = (int)lua_rawlen(L, base);
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, base, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_remove(L, base);
}

/* tether.dump() -> text */
static int l_dump(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  if (S->roots == NULL) {
    lua_pushliteral(L, "tether: no run is active");
    return 1;
  }
  lua_settop(L, 0);
  tk_dump_push(L, S);
  return 1;
}

static const luaL_Reg dump_funcs[] = {
  {"dump", l_dump},
  {NULL, NULL}
};

void tt_dump_open(lua_State *L, tt_sched *S) {
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, dump_funcs, 1);
}
