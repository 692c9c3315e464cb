/* io_tcp.c - TCP: connect (happy eyeballs), listen, serve, and the socket methods of streams */
#include <stdlib.h>
#include <string.h>

#include "io.h"

#define ATTEMPT_DELAY 250   /* ms between two connection attempts (RFC 8305) */
#define MAX_ATTEMPTS 16     /* addresses tried at most */
#define BACKLOG 511

/* ---- types ------------------------------------------------------------ */

enum { AT_IDLE, AT_RUNNING, AT_FAILED, AT_WON };

typedef struct tt_conn tt_conn;

/* One connection attempt: a stream made beforehand (by the task) whose
** handle connects to one address. */
typedef struct tt_attempt {
  tt_conn *c;
  tt_stream *s;
  uv_connect_t req;
  tt_sockaddr addr;
  int err;
  uint8_t state;            /* AT_* */
} tt_attempt;

/*
** A connect operation.  Shared (`refs`) by the box on the task's stack, the
** stagger timer until its close callback, and every connect request in
** flight; freed when all are gone.  The op completes when an attempt won,
** when all failed, or, after a cancel, once every attempt's callback ran.
*/
struct tt_conn {
  tt_op op;
  tt_sched *S;
  uv_timer_t timer;
  int refs;
  int n, next, nrun, winner;
  int first_err;
  uint8_t timer_open;
  uint8_t over;             /* won, all failed, or cancelled */
  tt_attempt att[1];        /* n of them */
};

#define CONN_MT "tether.Connect"

/* ---- static helpers --------------------------------------------------- */

static void tcp_describe(lua_State *L, tt_io *io) {
  tt_stream *s = (tt_stream *)io;
  tt_sockaddr a;
  int len = sizeof a;
  char host[64];
  int port;
  if (s->opened && uv_tcp_getpeername(&s->h.tcp, &a.sa, &len) == 0 &&
      ts_ip_name(&a.sa, host, sizeof host, &port) == 0)
    lua_pushfstring(L, "tcp %s:%d", host, port);
  else
    lua_pushliteral(L, "tcp");
}

static void tcp_listener_describe(lua_State *L, tt_io *io) {
  tt_listener *l = (tt_listener *)io;
  lua_pushfstring(L, "tcp listener %s:%d", l->host, l->port);
}

static const tt_io_kind tcp_stream_kind = {"tcp", ts_stream_close,
                                           tcp_describe};
static const tt_io_kind tcp_listener_kind = {"tcp listener",
                                             ts_listener_close,
                                             tcp_listener_describe};

static int tcp_stream_init(uv_loop_t *loop, tt_stream *s) {
  return uv_tcp_init(loop, &s->h.tcp);
}

static void ts_conn_unref(tt_conn *c) {
  if (--c->refs == 0) free(c);
}

static int l_conn_gc(lua_State *L) {
  tt_conn **box = lua_touserdata(L, 1);
  if (*box) ts_conn_unref(*box);
  *box = NULL;
  return 0;
}

static void ts_on_conn_timer_closed(uv_handle_t *h) {
  tt_conn *c = h->data;
  c->S->nhandles--;
  ts_conn_unref(c);
}

/* The operation is over: no attempt starts any more; close every stream
** but the winner's (their connect requests end with UV_ECANCELED). */
static void ts_conn_over(tt_conn *c) {
  int i;
  c->over = 1;
  if (c->timer_open) {
    c->timer_open = 0;
    uv_close((uv_handle_t *)&c->timer, ts_on_conn_timer_closed);
  }
  for (i = 0; i < c->n; i++)
    if (c->att[i].state != AT_WON) ts_io_close(&c->att[i].s->io);
}

static void ts_conn_start_next(tt_conn *c);

static void ts_on_connect(uv_connect_t *req, int status) {
  tt_attempt *a = req->data;
  tt_conn *c = a->c;
  c->nrun--;
  if (status == 0 && !c->over) {
    a->state = AT_WON;
    c->winner = (int)(a - c->att);
    ts_conn_over(c);
    ts_op_done(&c->op, 0);
  } else {
    a->state = AT_FAILED;
    a->err = status ? status : UV_ECANCELED;
    if (c->over) {
      ts_io_close(&a->s->io);
      if (c->op.cancelling && c->nrun == 0 && !c->op.done)
        ts_op_done(&c->op, UV_ECANCELED);
    } else {
      ts_conn_start_next(c);
    }
  }
  ts_conn_unref(c);
}

static void ts_on_conn_timer(uv_timer_t *h) {
  tt_conn *c = h->data;
  if (!c->over) ts_conn_start_next(c);
}

/*
** Start the next attempt (the previous one failed, or its delay is up);
** when none is left and none runs, the operation failed.
*/
static void ts_conn_start_next(tt_conn *c) {
  while (c->next < c->n) {
    tt_attempt *a = &c->att[c->next++];
    int err = uv_tcp_connect(&a->req, &a->s->h.tcp, &a->addr.sa,
                             ts_on_connect);
    if (err == 0) {
      a->state = AT_RUNNING;
      c->nrun++;
      c->refs++;
      if (c->timer_open && c->next < c->n)
        uv_timer_start(&c->timer, ts_on_conn_timer, ATTEMPT_DELAY, 0);
      return;
    }
    a->state = AT_FAILED;
    a->err = err;
  }
  if (c->nrun == 0) {
    int i;
    for (i = 0; i < c->n; i++)
      if (c->att[i].err) { c->first_err = c->att[i].err; break; }
    ts_conn_over(c);
    ts_op_done(&c->op, c->first_err ? c->first_err : UV_ECONNREFUSED);
  }
}

/* Cancel action: close every attempt; done once their callbacks ran. */
static void ts_conn_cancel(tt_op *op) {
  tt_conn *c = (tt_conn *)op;
  ts_conn_over(c);
  if (c->nrun == 0) ts_op_done(op, UV_ECANCELED);
}

/* Push an IOError of `cls` for `err` in `op`, with host and port. */
static void tk_push_neterror(lua_State *L, tt_sched *S, int err,
                             const char *op, const char *host, int port) {
  tk_new_ioerror(L, S, TT_CLS_IO, err, op);
  lua_pushstring(L, host);
  lua_setfield(L, -2, "host");
  lua_pushinteger(L, port);
  lua_setfield(L, -2, "port");
}

/*
** Stack of connect: 1 host, 2 port, 3 opts, 4 box of the connect, then
** the attempts' streams.
*/
static int k_connect(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_conn *c = *(tt_conn **)lua_touserdata(L, 4);
  const char *host = lua_tostring(L, 1);
  int port = (int)lua_tointeger(L, 2), i;
  (void)status; (void)ctx;
  tk_op_cancelled(L, &c->op);
  if (c->winner >= 0) {
    tt_stream *s = c->att[c->winner].s;
    if (!lua_isnil(L, 3) && !tk_opt_bool(L, 3, "nodelay", 1, "connect"))
      uv_tcp_nodelay(&s->h.tcp, 0);
    else
      uv_tcp_nodelay(&s->h.tcp, 1);
    lua_pushvalue(L, 5 + c->winner);
    return 1;
  }
  tk_push_neterror(L, S, c->first_err ? c->first_err : (int)c->op.result,
                   "connect", host, port);
  lua_createtable(L, c->n, 1);
  for (i = 0; i < c->n; i++) {
    char name[64];
    ts_ip_name(&c->att[i].addr.sa, name, sizeof name, NULL);
    tk_push_neterror(L, S, c->att[i].err ? c->att[i].err : UV_ECANCELED,
                     "connect", name, port);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushinteger(L, c->n);
  lua_setfield(L, -2, "n");
  lua_setfield(L, -2, "errors");
  return lua_error(L);
}

/* Start connecting to the `n` addresses: stack 1 host, 2 port, 3 opts. */
static int tk_connect_start(lua_State *L, tt_sched *S, tt_task *t,
                            const tt_sockaddr *addrs, int n) {
  tt_conn **box, *c;
  int i;
  lua_settop(L, 3);
  box = lua_newuserdatauv(L, sizeof(tt_conn *), 0);
  *box = NULL;
  luaL_setmetatable(L, CONN_MT);
  c = calloc(1, sizeof(tt_conn) + (size_t)(n - 1) * sizeof(tt_attempt));
  if (c == NULL) return luaL_error(L, "not enough memory");
  *box = c;
  c->S = S;
  c->refs = 1;
  c->n = n;
  c->winner = -1;
  ts_op_init(&c->op, NULL, "connect", ts_conn_cancel);
  c->op.holds_clock = 1;
  luaL_checkstack(L, n, "too many addresses");
  for (i = 0; i < n; i++) {
    tt_attempt *a = &c->att[i];
    tt_stream *s = tk_stream_new(L, S, &tcp_stream_kind);
    int err = uv_tcp_init(S->loop, &s->h.tcp);
    if (err) {
      ts_conn_over(c);
      tk_push_neterror(L, S, err, "connect", lua_tostring(L, 1),
                       (int)lua_tointeger(L, 2));
      return lua_error(L);
    }
    ts_stream_opened(s);
    a->c = c;
    a->s = s;
    a->addr = addrs[i];
    a->req.data = a;
  }
  if (n > 1) {
    uv_timer_init(S->loop, &c->timer);
    c->timer.data = c;
    c->timer_open = 1;
    c->refs++;
    S->nhandles++;
  }
  ts_conn_start_next(c);
  if (c->op.done) return k_connect(L, LUA_OK, 0);   /* every one failed at once */
  return tk_op_await(L, t, &c->op, k_connect);
}

/* Continuation of the lookup: stack 1 host, 2 port, 3 opts, 4 lookup box. */
static int k_connect_resolved(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  struct addrinfo *ai = tk_lookup_result(L, 4, lua_tostring(L, 1));
  tt_sockaddr addrs[MAX_ATTEMPTS];
  int n = 0, port = (int)lua_tointeger(L, 2), i, other = -1;
  (void)status; (void)ctx;
  for (; ai && n < MAX_ATTEMPTS; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET)
      memcpy(&addrs[n].in, ai->ai_addr, sizeof addrs[n].in);
    else if (ai->ai_family == AF_INET6)
      memcpy(&addrs[n].in6, ai->ai_addr, sizeof addrs[n].in6);
    else
      continue;
    if (ai->ai_family == AF_INET) addrs[n].in.sin_port = htons(port);
    else addrs[n].in6.sin6_port = htons(port);
    n++;
  }
  if (n == 0) {
    tk_push_neterror(L, S, UV_EAI_NODATA, "getaddrinfo", lua_tostring(L, 1),
                     port);
    return lua_error(L);
  }
  /* RFC 8305: the first address of the other family comes second */
  for (i = 1; i < n; i++)
    if (addrs[i].sa.sa_family != addrs[0].sa.sa_family) { other = i; break; }
  if (other > 1) {
    tt_sockaddr o = addrs[other];
    memmove(&addrs[2], &addrs[1], (size_t)(other - 1) * sizeof *addrs);
    addrs[1] = o;
  }
  return tk_connect_start(L, S, S->current, addrs, n);
}

/* ---- listen ----------------------------------------------------------- */

static const char *const listen_keys[] = {"host", "backlog", NULL};
static const char *const serve_keys[] = {"host", "backlog", "limit", NULL};

/* Check listen's or serve's port at `arg` and options at arg + 1. */
static void tk_check_listen_args(lua_State *L, int arg, const char *fname,
                                 const char *const keys[]) {
  int o;
  tk_check_port(L, arg, fname, 0);
  o = tk_check_opts(L, arg + 1, fname, keys) ? arg + 1 : 0;
  tk_opt_str(L, o, "host", fname);
  if (o && tk_opt_field(L, o, "backlog") != LUA_TNIL) {
    int isint;
    lua_Integer b = lua_tointegerx(L, -1, &isint);
    if (lua_type(L, -1) != LUA_TNUMBER || !isint || b < 1 || b > 0x7fffffff)
      tk_argerror(L, o, fname, "option 'backlog': positive integer expected");
  }
  if (o) lua_pop(L, 1);
}

/* Bind and listen on `addr`; push the listener, or return a libuv error
** (the listener closed and popped). */
static int tk_tcp_bind(lua_State *L, tt_sched *S, const tt_sockaddr *addr,
                       int backlog) {
  tt_listener *l = tk_listener_new(L, S, &tcp_listener_kind);
  tt_sockaddr a;
  int len = sizeof a, err;
  l->skind = &tcp_stream_kind;
  l->init = tcp_stream_init;
  err = uv_tcp_init(S->loop, &l->h.tcp);
  if (err == 0) {
    l->h.handle.data = l;
    l->opened = 1;
    ts_io_hold(&l->io);
    err = uv_tcp_bind(&l->h.tcp, &addr->sa, 0);
  }
  if (err == 0) err = tk_listener_start(L, l, backlog);
  if (err == 0) err = uv_tcp_getsockname(&l->h.tcp, &a.sa, &len);
  if (err) {
    ts_io_close(&l->io);
    lua_pop(L, 1);
    return err;
  }
  ts_ip_name(&a.sa, l->host, sizeof l->host, &l->port);
  return 0;
}

/* Listen on the numeric `host` (or "*"); push the listener. */
static int tk_tcp_listen_at(lua_State *L, tt_sched *S, const char *host,
                            int port, int backlog) {
  tt_sockaddr addr;
  int err;
  if (strcmp(host, "*") == 0) {
    ts_ip_parse("::", port, &addr);
    err = tk_tcp_bind(L, S, &addr, backlog);
    if (err == UV_EAFNOSUPPORT || err == UV_EADDRNOTAVAIL) {
      ts_ip_parse("0.0.0.0", port, &addr);
      err = tk_tcp_bind(L, S, &addr, backlog);
    }
  } else {
    ts_ip_parse(host, port, &addr);
    err = tk_tcp_bind(L, S, &addr, backlog);
  }
  if (err) {
    tk_push_neterror(L, S, err, "listen", host, port);
    return lua_error(L);
  }
  return 1;
}

static int listen_backlog(lua_State *L) {
  lua_Integer b = BACKLOG;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "backlog");
    if (!lua_isnil(L, -1)) b = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  return (int)b;
}

/* Continuation of listen's lookup: 1 port, 2 opts, 3 host, 4 lookup box. */
static int k_listen_resolved(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  const char *host = lua_tostring(L, 3);
  struct addrinfo *ai = tk_lookup_result(L, 4, host);
  int port = (int)lua_tointeger(L, 1), err = UV_EAI_NODATA;
  (void)status; (void)ctx;
  for (; ai; ai = ai->ai_next) {
    tt_sockaddr addr;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    if (ai->ai_family == AF_INET) addr.in.sin_port = htons(port);
    else addr.in6.sin6_port = htons(port);
    err = tk_tcp_bind(L, S, &addr, listen_backlog(L));
    if (err == 0) return 1;
    break;                          /* each listener binds one address */
  }
  tk_push_neterror(L, S, err, err == UV_EAI_NODATA ? "getaddrinfo" : "listen",
                   host, port);
  return lua_error(L);
}

/* listen(port [, opts]) once checked: push the listener (the lookup of a
** host name blocks). */
static int tk_tcp_listen(lua_State *L, const char *fname) {
  tt_sched *S = TT_UPSCHED(L);
  int port = (int)lua_tointeger(L, 1);
  const char *host = NULL;
  tt_sockaddr addr;
  tt_task *t;
  lua_settop(L, 2);
  if (lua_istable(L, 2)) host = tk_opt_str(L, 2, "host", fname);
  if (host == NULL) host = "127.0.0.1";
  if (strcmp(host, "*") == 0 || ts_ip_parse(host, port, &addr) == 0)
    return tk_tcp_listen_at(L, S, host, port, listen_backlog(L));
  t = tk_current(L, S, fname);
  if (ts_cancelled(t)) return tk_raise_cancelled(L, S, ts_cancelled(t));
  lua_pushstring(L, host);
  return tk_lookup(L, S, t, host, SOCK_STREAM, AI_PASSIVE, k_listen_resolved);
}

/* ---- bindings --------------------------------------------------------- */

static const char *const connect_keys[] = {"nodelay", NULL};

/* An array of numeric addresses at 1 (connect's extension): fill `addrs`,
** replace it by their list as text (for errors); returns how many. */
static int tk_address_list(lua_State *L, const char *fname, int port,
                           tt_sockaddr *addrs) {
  int n = (int)lua_rawlen(L, 1), i;
  luaL_Buffer b;
  if (n < 1 || n > MAX_ATTEMPTS)
    tk_argerror(L, 1, fname, "host: 1 to 16 numeric addresses expected");
  luaL_buffinit(L, &b);
  for (i = 0; i < n; i++) {
    const char *a;
    lua_rawgeti(L, 1, i + 1);
    a = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (a == NULL || strlen(a) != lua_rawlen(L, -1) ||
        ts_ip_parse(a, port, &addrs[i]) != 0)
      tk_argerror(L, 1, fname, "host: an array of numeric addresses expected");
    lua_pop(L, 1);
    if (i) luaL_addchar(&b, ',');
    lua_rawgeti(L, 1, i + 1);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_replace(L, 1);
  return n;
}

/* tether.tcp.connect(host, port [, opts]) -> stream   (opts.nodelay, default true)
**   host: a name or a numeric address; or an array of numeric addresses,
**   tried in that order with the same staggering (no lookup). */
static int l_tcp_connect(lua_State *L) {
  static const char *fname = "tether.tcp.connect";
  tt_sched *S = TT_UPSCHED(L);
  const char *host = lua_istable(L, 1) ? NULL
                     : tk_check_cstr(L, 1, fname, "host", NULL);
  int port = tk_check_port(L, 2, fname, 1);
  int o = tk_check_opts(L, 3, fname, connect_keys) ? 3 : 0;
  tt_sockaddr addr;
  tt_task *t;
  tk_opt_bool(L, o, "nodelay", 1, fname);
  t = tk_current(L, S, fname);
  lua_settop(L, 3);
  lua_pushinteger(L, port);
  lua_replace(L, 2);
  if (host == NULL) {
    tt_sockaddr addrs[MAX_ATTEMPTS];
    int n = tk_address_list(L, fname, port, addrs);
    if (ts_cancelled(t)) return tk_raise_cancelled(L, S, ts_cancelled(t));
    return tk_connect_start(L, S, t, addrs, n);
  }
  if (ts_cancelled(t)) return tk_raise_cancelled(L, S, ts_cancelled(t));
  if (ts_ip_parse(host, port, &addr) == 0)
    return tk_connect_start(L, S, t, &addr, 1);
  return tk_lookup(L, S, t, host, SOCK_STREAM, 0, k_connect_resolved);
}

/* tether.tcp.listen(port [, opts]) -> listener   (opts.host, opts.backlog) */
static int l_tcp_listen(lua_State *L) {
  tk_check_listen_args(L, 1, "tether.tcp.listen", listen_keys);
  return tk_tcp_listen(L, "tether.tcp.listen");
}

/* listen for serve: arguments already checked, opts.limit allowed */
static int l_tcp_listen_serve(lua_State *L) {
  return tk_tcp_listen(L, "tether.tcp.serve");
}

/* tether.tcp.serve([started,] handler, port [, opts])  (opts.host, backlog, limit) */
static int l_tcp_serve(lua_State *L) {
  static const char *fname = "tether.tcp.serve";
  int base = tk_is_callable(L, 1) && tk_is_callable(L, 2) ? 2 : 1;
  tk_check_listen_args(L, base + 1, fname, serve_keys);
  return tk_serve(L, fname, l_tcp_listen_serve);
}

/* The socket of the stream at 1 for method `what`: TCP, or a local socket
** when `unix_ok`. */
static tt_stream *tk_check_socket(lua_State *L, const char *what,
                                  const char *op, int unix_ok) {
  tt_stream *s = tk_stream_check(L, what, op);
  int type = s->h.handle.type;
  if (type != UV_TCP && !(unix_ok && type == UV_NAMED_PIPE))
    luaL_error(L, "%s: not a %s", what, unix_ok ? "socket" : "TCP stream");
  return s;
}

static int tk_sockname(lua_State *L, int peer) {
  tt_sched *S = TT_UPSCHED(L);
  const char *what = peer ? "s:getpeername" : "s:getsockname";
  const char *op = peer ? "getpeername" : "getsockname";
  tt_stream *s = tk_check_socket(L, what, op, 1);
  int err;
  if (s->h.handle.type == UV_NAMED_PIPE) {
    char buf[256];
    size_t len = sizeof buf;
    err = peer ? uv_pipe_getpeername(&s->h.pipe, buf, &len)
               : uv_pipe_getsockname(&s->h.pipe, buf, &len);
    if (err == 0) {
      lua_pushlstring(L, buf, len);
      return 1;
    }
  } else {
    tt_sockaddr a;
    int len = sizeof a;
    err = peer ? uv_tcp_getpeername(&s->h.tcp, &a.sa, &len)
               : uv_tcp_getsockname(&s->h.tcp, &a.sa, &len);
    if (err == 0) return tk_push_sockaddr(L, &a.sa);
  }
  return tk_raise_ioerror(L, S, err, op, &s->io);
}

/* s:getpeername() -> address, port   (a local socket: its path) */
static int l_getpeername(lua_State *L) {
  return tk_sockname(L, 1);
}

/* s:getsockname() -> address, port   (a local socket: its path) */
static int l_getsockname(lua_State *L) {
  return tk_sockname(L, 0);
}

/* s:set_nodelay(on) */
static int l_set_nodelay(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_stream *s = tk_check_socket(L, "s:set_nodelay", "set_nodelay", 0);
  int err;
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  err = uv_tcp_nodelay(&s->h.tcp, lua_toboolean(L, 2));
  if (err) return tk_raise_ioerror(L, S, err, "set_nodelay", &s->io);
  return 0;
}

/* s:set_keepalive(on [, seconds])   (seconds: idle time before probes, default 60) */
static int l_set_keepalive(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_stream *s = tk_check_socket(L, "s:set_keepalive", "set_keepalive", 0);
  lua_Integer delay = 60;
  int err;
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  if (!lua_isnoneornil(L, 3)) {
    delay = luaL_checkinteger(L, 3);
    luaL_argcheck(L, delay >= 1 && delay <= 0x7fffffff, 3,
                  "positive integer expected");
  }
  err = uv_tcp_keepalive(&s->h.tcp, lua_toboolean(L, 2), (unsigned)delay);
  if (err) return tk_raise_ioerror(L, S, err, "set_keepalive", &s->io);
  return 0;
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg tcp_funcs[] = {
  {"connect", l_tcp_connect},
  {"listen", l_tcp_listen},
  {"serve", l_tcp_serve},
  {NULL, NULL}
};

static const luaL_Reg socket_methods[] = {
  {"getpeername", l_getpeername},
  {"getsockname", l_getsockname},
  {"set_nodelay", l_set_nodelay},
  {"set_keepalive", l_set_keepalive},
  {NULL, NULL}
};

void tt_tcp_open(lua_State *L, tt_sched *S) {
  luaL_newmetatable(L, CONN_MT);
  lua_pushcfunction(L, l_conn_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  tk_stream_add_methods(L, S, socket_methods);
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, tcp_funcs, 1);
  lua_setfield(L, -2, "tcp");
}
