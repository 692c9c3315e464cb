/* io_listen.c - listeners of TCP and local sockets: accept, and serve (a task per connection) */
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

#define LISTENER_MT "tether.Listener"
#define RETRY_DELAY 0.1     /* s: accept failed for lack of fds or memory */

static const char sleep_key = 0;   /* the registry holds tether.sleep here */

/* ---- types ------------------------------------------------------------ */

/* What serve shares with the tasks that handle its connections: a full
** userdata that the serve task and every handler task hold. */
typedef struct tt_serve {
  tt_op sop;                /* the serve task waits for a free slot */
  int nactive;              /* handler tasks not yet finished */
  int limit;                /* 0: none */
} tt_serve;

/* Stages of serve and of its accept loop (the continuation's context). */
enum { SV_LISTENED = 1, SV_STARTED, SV_DONE };
enum { B_SLOT = 1, B_ACCEPTED, B_SLEPT };

/* ---- static helpers --------------------------------------------------- */

#define LISTENER(io) ((tt_listener *)(io))

static void ts_on_listener_closed(uv_handle_t *h) {
  ts_io_release(&LISTENER(h->data)->io);
}

/* Add the listener's context (host and port, or path) to the error on top. */
static void tk_listener_context(lua_State *L, tt_listener *l) {
  if (l->path) {
    lua_pushstring(L, l->path);
    lua_setfield(L, -2, "path");
  } else {
    lua_pushstring(L, l->host);
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, l->port);
    lua_setfield(L, -2, "port");
  }
}

static int tk_listener_error(lua_State *L, tt_sched *S, tt_listener *l,
                             int err, const char *op) {
  tk_new_ioerror(L, S, TT_CLS_IO, err, op);
  tk_listener_context(L, l);
  return lua_error(L);
}

/* libuv took a connection off the kernel's queue (or failed to). */
static void ts_on_connection(uv_stream_t *server, int status) {
  tt_listener *l = server->data;
  if (status >= 0) l->pending = 1;
  if (l->aop.task) ts_op_done(&l->aop, status < 0 ? status : 0);
  else if (status < 0) l->err = status;
}

/* Cancel action of accept: nothing was taken, nothing to take back. */
static void ts_accept_cancel(tt_op *op) {
  ts_op_done(op, UV_ECANCELED);
}

/* Take the pending connection: push its stream. */
static void tk_accept_pending(lua_State *L, tt_sched *S, tt_listener *l) {
  tt_stream *s = tk_stream_new(L, S, l->skind);
  int err = l->init(S->loop, s);
  if (err) {
    ts_io_close(&s->io);
    tk_listener_error(L, S, l, err, "accept");
  }
  ts_stream_opened(s);
  err = uv_accept(&l->h.stream, &s->h.stream);
  l->pending = 0;
  if (err) {
    ts_io_close(&s->io);
    tk_listener_error(L, S, l, err, "accept");
  }
  if (s->h.handle.type == UV_TCP) uv_tcp_nodelay(&s->h.tcp, 1);
}

/* The listener of the userdata at 1, or a ClosedResourceError. */
static tt_listener *tk_open_listener(lua_State *L, tt_sched *S) {
  tt_listener *l = *(tt_listener **)lua_touserdata(L, 1);
  if (l == NULL || l->io.closed) tk_raise_closed(L, S, "accept");
  return l;
}

/* Continuation of an accept that waited: stack 1 listener. */
static int k_accept(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *t = S->current;
  tt_listener *l;
  (void)status; (void)ctx;
  /* NOTE: nothing is taken before uv_accept, so a cancelled task always
     raises, even when a connection came in the same tick: it stays for
     the next accept. */
  if (ts_cancelled(t)) return tk_raise_cancelled(L, S, ts_cancelled(t));
  l = tk_open_listener(L, S);
  if (l->aop.result < 0 && l->aop.result != UV_ECANCELED)
    return tk_listener_error(L, S, l, (int)l->aop.result, "accept");
  if (!l->pending) return tk_op_await(L, t, &l->aop, k_accept);
  tk_accept_pending(L, S, l);
  return 1;
}

/* ---- core functions --------------------------------------------------- */

/*
** Push a new listener of kind `kind` (its handle not yet initialised: the
** family does that, then sets `opened` and holds the object).
*/
tt_listener *tk_listener_new(lua_State *L, tt_sched *S,
                             const tt_io_kind *kind) {
  tt_listener *l = tk_io_new(L, S, sizeof(tt_listener), kind,
                             S->io_mt[TT_MT_LISTENER]);
  ts_op_init(&l->aop, &l->io, "accept", ts_accept_cancel);
  l->h.handle.data = l;
  return l;
}

/* Start listening; returns 0 or a libuv error. */
int tk_listener_start(lua_State *L, tt_listener *l, int backlog) {
  (void)L;
  l->h.handle.data = l;
  return uv_listen(&l->h.stream, backlog, ts_on_connection);
}

/*
** Close a listener (its kind's close): a task blocked in accept gets
** ClosedResourceError, a local socket's file is removed (if it is still
** the one we made).
*/
void ts_listener_close(tt_io *io) {
  tt_listener *l = LISTENER(io);
  if (l->aop.task) ts_op_done(&l->aop, UV_EBADF);
  if (l->opened) {
    l->opened = 0;
    uv_close(&l->h.handle, ts_on_listener_closed);
  }
  if (l->path) {
    struct stat st;
    if (l->ino && stat(l->path, &st) == 0 &&
        (unsigned long)st.st_dev == l->dev && (unsigned long)st.st_ino == l->ino)
      unlink(l->path);
    free(l->path);
    l->path = NULL;
  }
}

/* ---- serve ------------------------------------------------------------ */

/* Cancel action of the wait for a slot. */
static void ts_slot_cancel(tt_op *op) {
  ts_op_done(op, UV_ECANCELED);
}

/* Continuation of a handler task: stack 1 handler, 2 stream, 3 msgh. */
static int k_serve_child(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_serve *sv = lua_touserdata(L, lua_upvalueindex(2));
  tt_io **ud = lua_touserdata(L, 2);
  (void)ctx;
  if (*ud) ts_io_close(*ud);
  sv->nactive--;
  if (sv->sop.task) ts_op_done(&sv->sop, 0);
  if (status != LUA_OK && status != LUA_YIELD) {
    tk_reraise_mark(L, S);
    return lua_error(L);
  }
  return 0;
}

/* A handler task: handler(stream), then the stream is closed.
** Upvalues: 1 the scheduler, 2 the serve state. */
static int l_serve_child(lua_State *L) {
  lua_settop(L, 2);
  lua_pushcfunction(L, tt_msgh);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  return k_serve_child(L, lua_pcallk(L, 1, 0, 3, 0, k_serve_child), 0);
}

/* Is the error on top an IOError whose code is one of `codes`? */
static int is_code(lua_State *L, const char *const codes[]) {
  int i, r = 0;
  if (!lua_istable(L, -1)) return 0;
  if (lua_getfield(L, -1, "code") == LUA_TSTRING) {
    const char *c = lua_tostring(L, -1);
    for (i = 0; codes[i]; i++)
      if (strcmp(c, codes[i]) == 0) r = 1;
  }
  lua_pop(L, 1);
  return r;
}

static int l_listener_accept(lua_State *L);

static int k_serve_body(lua_State *L, int status, lua_KContext stage);

/* Continuation of the wait for a slot (its context is the op). */
static int k_serve_slot(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  return k_serve_body(L, status, B_SLOT);
}

/*
** The body of serve's group: wait for a slot (opts.limit), accept, spawn a
** handler task, again.  Stack 1 the group.  Upvalues: 1 the scheduler,
** 2 the listener, 3 the handler, 4 the serve state, 5 tether.sleep.
*/
static int k_serve_body(lua_State *L, int status, lua_KContext stage) {
  static const char *const retry[] = {"EMFILE", "ENFILE", "ENOBUFS",
                                      "ENOMEM", NULL};
  static const char *const closed[] = {"EBADF", NULL};
  tt_sched *S = TT_UPSCHED(L);
  tt_serve *sv = lua_touserdata(L, lua_upvalueindex(4));
  tt_task *t = S->current;
  for (;;) {
    switch (stage) {
      case B_SLOT:
        lua_settop(L, 1);
        if (sv->sop.done) tk_op_cancelled(L, &sv->sop);
        sv->sop.done = 0;
        if (sv->limit && sv->nactive >= sv->limit) {
          if (ts_cancelled(t)) return tk_raise_cancelled(L, S, ts_cancelled(t));
          return tk_op_await(L, t, &sv->sop, k_serve_slot);
        }
        lua_pushlightuserdata(L, S);
        lua_pushcclosure(L, l_listener_accept, 1);
        lua_pushvalue(L, lua_upvalueindex(2));
        status = lua_pcallk(L, 1, 1, 0, B_ACCEPTED, k_serve_body);
        /* FALLTHROUGH */
      case B_ACCEPTED:
        if (status != LUA_OK && status != LUA_YIELD) {
          if (tk_is_cancelled(L, S, -1)) return lua_error(L);
          if (is_code(L, closed)) return 0;   /* the listener was closed */
          if (!is_code(L, retry)) return lua_error(L);
          lua_settop(L, 1);
          lua_pushvalue(L, lua_upvalueindex(5));
          lua_pushnumber(L, RETRY_DELAY);
          lua_callk(L, 1, 0, B_SLEPT, k_serve_body);
          stage = B_SLOT;
          continue;
        }
        {                               /* stack: 1 group, 2 stream */
          tt_group *g = lua_touserdata(L, 1);
          lua_pushlightuserdata(L, S);
          lua_pushvalue(L, lua_upvalueindex(4));
          lua_pushcclosure(L, l_serve_child, 2);
          lua_pushvalue(L, lua_upvalueindex(3));
          lua_pushvalue(L, 2);
          tk_group_spawn(L, g, 3);
          sv->nactive++;
        }
        stage = B_SLOT;
        status = LUA_OK;
        continue;
      default:                        /* B_SLEPT */
        stage = B_SLOT;
        continue;
    }
  }
}

/* Stage B_SLOT also continues a wait for a slot (it has no context). */
static int l_serve_body(lua_State *L) {
  tt_serve *sv = lua_touserdata(L, lua_upvalueindex(4));
  sv->sop.done = 0;
  return k_serve_body(L, LUA_OK, B_SLOT);
}

/*
** Stack of serve: 1 handler, 2 address, 3 opts, 4 started or nil, 5 the
** name of the function, 6 the listener (to-be-closed).
*/
static int k_serve(lua_State *L, int status, lua_KContext stage) {
  tt_sched *S = TT_UPSCHED(L);
  (void)status;
  switch (stage) {
    case SV_LISTENED:
      lua_toclose(L, 6);
      if (!lua_isnil(L, 4)) {
        lua_pushvalue(L, 4);
        lua_pushvalue(L, 6);
        lua_callk(L, 1, 0, SV_STARTED, k_serve);
      }
      /* FALLTHROUGH */
    case SV_STARTED: {
      tt_serve *sv;
      lua_settop(L, 6);
      lua_pushlightuserdata(L, S);
      lua_pushcclosure(L, l_with_group, 1);
      lua_createtable(L, 0, 1);
      lua_pushvalue(L, 5);
      lua_setfield(L, -2, "name");
      lua_pushlightuserdata(L, S);
      lua_pushvalue(L, 6);
      lua_pushvalue(L, 1);
      sv = lua_newuserdatauv(L, sizeof(tt_serve), 0);
      memset(sv, 0, sizeof *sv);
      ts_op_init(&sv->sop, NULL, "serve slot", ts_slot_cancel);
      if (!lua_isnil(L, 3)) {
        lua_getfield(L, 3, "limit");
        sv->limit = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
      }
      lua_rawgetp(L, LUA_REGISTRYINDEX, &sleep_key);
      lua_pushcclosure(L, l_serve_body, 5);
      lua_callk(L, 2, 0, SV_DONE, k_serve);
    }
      /* FALLTHROUGH */
    default:
      return 0;                     /* the listener is closed on return */
  }
}

/*
** serve([started,] handler, address [, opts]) for a family whose listen
** binding for serve (it accepts opts.limit) is `listen`.  The family has
** checked the address and the options; this checks the handler and the
** limit.  Runs until cancelled, or until the listener is closed.
*/
int tk_serve(lua_State *L, const char *fname, lua_CFunction listen) {
  tt_sched *S = TT_UPSCHED(L);
  int base = 1;
  if (tk_is_callable(L, 1) && tk_is_callable(L, 2)) base = 2; /* g:start */
  if (!tk_is_callable(L, base)) {
    lua_pushfstring(L, "handler: function expected, got %s",
                    luaL_typename(L, base));
    return tk_argerror(L, base, fname, lua_tostring(L, -1));
  }
  if (lua_istable(L, base + 2) &&
      tk_opt_field(L, base + 2, "limit") != LUA_TNIL) {
    lua_Integer n;
    int isint;
    n = lua_tointegerx(L, -1, &isint);
    if (lua_type(L, -1) != LUA_TNUMBER || !isint || n < 1 || n > 0x7fffffff)
      tk_argerror(L, base + 2, fname,
                  "option 'limit': positive integer expected");
    lua_pop(L, 1);
  }
  tk_current(L, S, fname);
  lua_settop(L, base + 2);
  if (base == 1) {
    lua_pushnil(L);
  } else {
    lua_pushvalue(L, 1);
    lua_remove(L, 1);
  }
  lua_pushstring(L, fname);
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, listen, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_callk(L, 2, 1, SV_LISTENED, k_serve);
  return k_serve(L, LUA_OK, SV_LISTENED);
}

/* ---- bindings --------------------------------------------------------- */

/* l:accept() -> stream */
static int l_listener_accept(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_listener *l = LISTENER(tk_io_checkopen(L, S->io_mt[TT_MT_LISTENER],
                                            "l:accept", "accept"));
  tt_task *t = tk_current(L, S, "l:accept");
  lua_settop(L, 1);
  if (ts_cancelled(t)) return tk_raise_cancelled(L, S, ts_cancelled(t));
  if (l->aop.task) {
    tk_new_ioerror(L, S, TT_CLS_BUSY, UV_EBUSY, "accept");
    tk_listener_context(L, l);
    return lua_error(L);
  }
  if (l->err) {
    int err = l->err;
    l->err = 0;
    return tk_listener_error(L, S, l, err, "accept");
  }
  if (!l->pending) return tk_op_await(L, t, &l->aop, k_accept);
  tk_accept_pending(L, S, l);
  return tk_yield_results(L, 1);
}

/* l.port, l.host, l.path, l.closed, and the methods */
static int l_listener_index(lua_State *L) {
  tt_listener *l = *(tt_listener **)lua_touserdata(L, 1);
  const char *k;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  k = lua_tostring(L, 2);
  if (k == NULL) return 1;
  if (strcmp(k, "closed") == 0) {
    lua_pushboolean(L, l == NULL || l->io.closed);
  } else if (l == NULL || l->io.closed) {
    lua_pushnil(L);
  } else if (strcmp(k, "port") == 0 && !l->path) {
    lua_pushinteger(L, l->port);
  } else if (strcmp(k, "host") == 0 && !l->path) {
    lua_pushstring(L, l->host);
  } else if (strcmp(k, "path") == 0 && l->path) {
    lua_pushstring(L, l->path);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static int l_listener_tostring(lua_State *L) {
  tt_listener *l = *(tt_listener **)lua_touserdata(L, 1);
  if (l == NULL || l->io.closed) lua_pushliteral(L, "tether.Listener (closed)");
  else if (l->path) lua_pushfstring(L, "tether.Listener (%s)", l->path);
  else lua_pushfstring(L, "tether.Listener (%s port %d)", l->host, l->port);
  return 1;
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg listener_methods[] = {
  {"accept", l_listener_accept},
  {NULL, NULL}
};

void tt_listen_open(lua_State *L, tt_sched *S) {
  lua_getfield(L, -1, "sleep");               /* the module table is on top */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &sleep_key);
  int ref = tk_io_newmeta(L, S, LISTENER_MT, listener_methods);
  S->io_mt[TT_MT_LISTENER] = ref;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_getfield(L, -1, "__index");
  lua_pushcclosure(L, l_listener_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_listener_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
