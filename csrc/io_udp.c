/* io_udp.c - UDP sockets: open, send_to, receive, broadcast and multicast options */
#include <stdlib.h>
#include <string.h>

#include "io.h"

#define UDP_MT "tether.UdpSocket"
#define DGRAM_MAX 65536     /* the receive buffer: the largest datagram */

/* ---- types ------------------------------------------------------------ */

/*
** A UDP socket.  NOTE: it reads from the kernel only while a receive
** waits, and stops at the first datagram, which it hands to that receive:
** so a cancelled receive leaves every datagram in the kernel for the next.
*/
typedef struct tt_udp {
  tt_io io;
  uv_udp_t h;
  tt_op rop;                /* the pending receive */
  char *buf;                /* DGRAM_MAX bytes, made at the first receive */
  ssize_t nread;            /* the datagram in buf, when got */
  tt_sockaddr from;
  uint8_t opened;
  uint8_t got;              /* a datagram waits for the receive's task */
} tt_udp;

/* A send that had to wait: shared by its callback and the task (which
** always resumes after the callback: the send cannot be taken back). */
typedef struct tt_udpsend {
  tt_op op;
  uv_udp_send_t req;
  tt_udp *u;
  int refs;
} tt_udpsend;

/* ---- static helpers --------------------------------------------------- */

static void ts_on_udp_closed(uv_handle_t *h) {
  ts_io_release(&((tt_udp *)h->data)->io);
}

/* The kind's close: a waiting receive gets ClosedResourceError; waiting
** sends end with UV_ECANCELED in their callbacks. */
static void ts_udp_close(tt_io *io) {
  tt_udp *u = (tt_udp *)io;
  if (u->rop.task) ts_op_done(&u->rop, UV_EBADF);
  free(u->buf);
  u->buf = NULL;
  if (u->opened) {
    u->opened = 0;
    uv_close((uv_handle_t *)&u->h, ts_on_udp_closed);
  }
}

static void udp_describe(lua_State *L, tt_io *io) {
  tt_udp *u = (tt_udp *)io;
  tt_sockaddr a;
  int len = sizeof a;
  char host[64];
  int port;
  if (u->opened && uv_udp_getsockname(&u->h, &a.sa, &len) == 0 &&
      ts_ip_name(&a.sa, host, sizeof host, &port) == 0)
    lua_pushfstring(L, "udp %s:%d", host, port);
  else
    lua_pushliteral(L, "udp");
}

static const tt_io_kind udp_kind = {"udp", ts_udp_close, udp_describe};

#define check_udp(L, what, op) \
  ((tt_udp *)tk_io_checkopen(L, TT_UPSCHED(L)->io_mt[TT_MT_UDP], what, op))

static int tk_udp_error(lua_State *L, tt_sched *S, int err, const char *op,
                        const char *host, int port) {
  tk_new_ioerror(L, S, TT_CLS_IO, err, op);
  if (host) {
    lua_pushstring(L, host);
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, port);
    lua_setfield(L, -2, "port");
  }
  return lua_error(L);
}

static void ts_udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  tt_udp *u = h->data;
  (void)hint;
  buf->base = u->buf;
  buf->len = u->buf ? DGRAM_MAX : 0;
}

static void ts_on_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                           const struct sockaddr *addr, unsigned flags) {
  tt_udp *u = h->data;
  (void)buf; (void)flags;
  if (nread == 0 && addr == NULL) return;   /* nothing more to read now */
  uv_udp_recv_stop(h);
  if (nread >= 0) {
    u->nread = nread;
    memset(&u->from, 0, sizeof u->from);
    memcpy(&u->from, addr, addr->sa_family == AF_INET6
                           ? sizeof(struct sockaddr_in6)
                           : sizeof(struct sockaddr_in));
    u->got = 1;
  }
  ts_op_done(&u->rop, nread >= 0 ? 0 : (intptr_t)nread);
}

/* Cancel action of a receive: stop reading; nothing was taken. */
static void ts_udp_recv_cancel(tt_op *op) {
  tt_udp *u = (tt_udp *)((char *)op - offsetof(tt_udp, rop));
  uv_udp_recv_stop(&u->h);
  ts_op_done(op, UV_ECANCELED);
}

/* The socket of the userdata at 1 in a continuation, or ClosedResourceError. */
static tt_udp *tk_udp_alive(lua_State *L, const char *op) {
  tt_udp *u = *(tt_udp **)lua_touserdata(L, 1);
  if (u == NULL || u->io.closed) tk_raise_closed(L, TT_UPSCHED(L), op);
  return u;
}

/* Continuation of receive: stack 1 socket. */
static int k_receive(lua_State *L, int status, lua_KContext ctx) {
  tt_udp *u = tk_udp_alive(L, "receive");
  (void)status; (void)ctx;
  if (u->got) {                     /* delivered, even to a cancelled task */
    lua_pushlstring(L, u->buf, (size_t)u->nread);
    tk_push_sockaddr(L, &u->from.sa);
    u->got = 0;                     /* taken once nothing can fail */
    return 3;
  }
  tk_op_cancelled(L, &u->rop);
  return tk_udp_error(L, TT_UPSCHED(L), (int)u->rop.result, "receive", NULL,
                      0);
}

static void ts_udpsend_unref(tt_udpsend *q) {
  if (--q->refs == 0) free(q);
}

static void ts_on_udp_sent(uv_udp_send_t *req, int status) {
  tt_udpsend *q = req->data;
  ts_op_done(&q->op, status);
  ts_io_release(&q->u->io);
  ts_udpsend_unref(q);
}

/* Cancel action of a send: a datagram cannot be taken back; it is sent
** whole (or dropped whole) soon, and the task wakes then. */
static void ts_udp_send_cancel(tt_op *op) {
  (void)op;
}

/* Continuation of a send that waited: 1 socket, 2 data, 3 address, 4 port,
** 5 the send (light userdata). */
static int k_send_to(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_udpsend *q = lua_touserdata(L, 5);
  int err = (int)q->op.result, cancelling = q->op.cancelling;
  (void)status; (void)ctx;
  ts_udpsend_unref(q);
  lua_settop(L, 4);
  if (err == UV_ECANCELED) {        /* the socket was closed meanwhile */
    tt_scope *s = cancelling ? ts_cancelled(S->current) : NULL;
    if (s) return tk_raise_cancelled(L, S, s);
    return tk_raise_closed(L, S, "send_to");
  }
  if (err < 0)
    return tk_udp_error(L, S, err, "send_to", lua_tostring(L, 3),
                        (int)lua_tointeger(L, 4));
  return 0;
}

/* Bind `u` to the numeric `host` ("*": both families) and `port`. */
static int ts_udp_bind(tt_udp *u, const char *host, int port,
                       unsigned flags) {
  tt_sockaddr a;
  int err;
  if (strcmp(host, "*") == 0) {
    ts_ip_parse("::", port, &a);
    err = uv_udp_bind(&u->h, &a.sa, flags);
    if (err == UV_EAFNOSUPPORT || err == UV_EADDRNOTAVAIL) {
      ts_ip_parse("0.0.0.0", port, &a);
      err = uv_udp_bind(&u->h, &a.sa, flags);
    }
    return err;
  }
  if (ts_ip_parse(host, port, &a)) return UV_EINVAL;
  return uv_udp_bind(&u->h, &a.sa, flags);
}

/* ---- bindings --------------------------------------------------------- */

static const char *const open_keys[] = {"host", "port", "reuse_addr", NULL};

/* tether.udp.open([opts]) -> socket   (opts.host: numeric or "*"; opts.port; opts.reuse_addr) */
static int l_udp_open(lua_State *L) {
  static const char *fname = "tether.udp.open";
  tt_sched *S = TT_UPSCHED(L);
  int o = tk_check_opts(L, 1, fname, open_keys) ? 1 : 0, port = 0, err;
  const char *host = tk_opt_str(L, o, "host", fname);
  int reuse = tk_opt_bool(L, o, "reuse_addr", 0, fname), bind = host != NULL;
  tt_sockaddr a;
  tt_udp *u;
  if (tk_opt_field(L, o, "port") != LUA_TNIL) {
    port = tk_check_port(L, lua_gettop(L), fname, 0);
    bind = 1;
  }
  lua_pop(L, 1);
  if (host && strcmp(host, "*") != 0 && ts_ip_parse(host, 0, &a))
    tk_argerror(L, 1, fname, "option 'host': numeric address or \"*\" "
                "expected (use tether.dns.getaddrinfo for names)");
  lua_settop(L, 1);
  u = tk_io_new(L, S, sizeof(tt_udp), &udp_kind, S->io_mt[TT_MT_UDP]);
  ts_op_init(&u->rop, &u->io, "receive", ts_udp_recv_cancel);
  err = uv_udp_init(S->loop, &u->h);
  if (err) {
    ts_io_close(&u->io);
    return tk_udp_error(L, S, err, "open", host, port);
  }
  u->h.data = u;
  u->opened = 1;
  ts_io_hold(&u->io);
  if (bind) {
    if (host == NULL) host = "127.0.0.1";
    err = ts_udp_bind(u, host, port, reuse ? UV_UDP_REUSEADDR : 0);
    if (err) {
      ts_io_close(&u->io);
      return tk_udp_error(L, S, err, "bind", host, port);
    }
  }
  return 1;
}

/* sock:send_to(data, address, port)   (address: numeric) */
static int l_send_to(lua_State *L) {
  static const char *fname = "sock:send_to";
  tt_sched *S = TT_UPSCHED(L);
  tt_udp *u = check_udp(L, fname, "send_to");
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *host = tk_check_cstr(L, 3, fname, "address", NULL);
  int port = tk_check_port(L, 4, fname, 1);
  tt_task *t = tk_current(L, S, fname);
  tt_udpsend *q;
  tt_sockaddr a;
  uv_buf_t b;
  int err;
  if (ts_ip_parse(host, port, &a))
    tk_argerror(L, 3, fname, "numeric address expected (use "
                "tether.dns.getaddrinfo for names)");
  lua_settop(L, 4);
  if (ts_cancelled(t)) return tk_raise_cancelled(L, S, ts_cancelled(t));
  b = uv_buf_init((char *)data, (unsigned)len);
  err = uv_udp_try_send(&u->h, &b, 1, &a.sa);
  if (err >= 0) return tk_yield_results(L, 0);
  if (err != UV_EAGAIN) return tk_udp_error(L, S, err, "send_to", host, port);
  q = calloc(1, sizeof *q);
  if (q == NULL) return luaL_error(L, "not enough memory");
  /* NOTE: no object on the op: the continuation frees the request (and the
     op in it), and the send holds the socket itself until its callback. */
  ts_op_init(&q->op, NULL, "send_to", ts_udp_send_cancel);
  q->op.holds_clock = 1;
  q->u = u;
  q->req.data = q;
  err = uv_udp_send(&q->req, &u->h, &b, 1, &a.sa, ts_on_udp_sent);
  if (err) {
    free(q);
    return tk_udp_error(L, S, err, "send_to", host, port);
  }
  q->refs = 2;
  ts_io_hold(&u->io);
  lua_pushlightuserdata(L, q);
  return tk_op_await(L, t, &q->op, k_send_to);
}

/* sock:receive() -> data, address, port */
static int l_receive(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_udp *u = check_udp(L, "sock:receive", "receive");
  tt_task *t = tk_current(L, S, "sock:receive");
  int err;
  lua_settop(L, 1);
  if (ts_cancelled(t)) return tk_raise_cancelled(L, S, ts_cancelled(t));
  if (u->rop.task) {
    tk_new_ioerror(L, S, TT_CLS_BUSY, UV_EBUSY, "receive");
    return lua_error(L);
  }
  if (u->buf == NULL && (u->buf = malloc(DGRAM_MAX)) == NULL)
    return luaL_error(L, "not enough memory");
  err = uv_udp_recv_start(&u->h, ts_udp_alloc, ts_on_udp_recv);
  if (err) return tk_udp_error(L, S, err, "receive", NULL, 0);
  return tk_op_await(L, t, &u->rop, k_receive);
}

/* sock:getsockname() -> address, port   (nil while unbound) */
static int l_udp_getsockname(lua_State *L) {
  tt_udp *u = check_udp(L, "sock:getsockname", "getsockname");
  tt_sockaddr a;
  int len = sizeof a;
  if (uv_udp_getsockname(&u->h, &a.sa, &len) != 0) return 0;
  return tk_push_sockaddr(L, &a.sa);
}

static int tk_udp_result(lua_State *L, int err, const char *op) {
  if (err) return tk_udp_error(L, TT_UPSCHED(L), err, op, NULL, 0);
  return 0;
}

/* sock:set_broadcast(on) */
static int l_set_broadcast(lua_State *L) {
  tt_udp *u = check_udp(L, "sock:set_broadcast", "set_broadcast");
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  return tk_udp_result(L, uv_udp_set_broadcast(&u->h, lua_toboolean(L, 2)),
                       "set_broadcast");
}

/* sock:set_multicast_loop(on) */
static int l_set_multicast_loop(lua_State *L) {
  tt_udp *u = check_udp(L, "sock:set_multicast_loop", "set_multicast_loop");
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  return tk_udp_result(L, uv_udp_set_multicast_loop(&u->h,
                                                    lua_toboolean(L, 2)),
                       "set_multicast_loop");
}

/* sock:set_multicast_ttl(n)   (1..255) */
static int l_set_multicast_ttl(lua_State *L) {
  tt_udp *u = check_udp(L, "sock:set_multicast_ttl", "set_multicast_ttl");
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1 && n <= 255, 2, "1..255 expected");
  return tk_udp_result(L, uv_udp_set_multicast_ttl(&u->h, (int)n),
                       "set_multicast_ttl");
}

static int tk_membership(lua_State *L, uv_membership m, const char *what) {
  tt_udp *u = check_udp(L, what, m == UV_JOIN_GROUP ? "join_group"
                                                    : "leave_group");
  const char *group = tk_check_cstr(L, 2, what, "group", NULL);
  const char *iface = lua_isnoneornil(L, 3) ? NULL
                      : tk_check_cstr(L, 3, what, "interface", NULL);
  tt_sockaddr a;
  if (ts_ip_parse(group, 0, &a))
    tk_argerror(L, 2, what, "numeric multicast address expected");
  return tk_udp_result(L, uv_udp_set_membership(&u->h, group, iface, m),
                       m == UV_JOIN_GROUP ? "join_group" : "leave_group");
}

/* sock:join_group(group [, interface]) */
static int l_join_group(lua_State *L) {
  return tk_membership(L, UV_JOIN_GROUP, "sock:join_group");
}

/* sock:leave_group(group [, interface]) */
static int l_leave_group(lua_State *L) {
  return tk_membership(L, UV_LEAVE_GROUP, "sock:leave_group");
}

/* sock.port (nil while unbound), sock.closed, and the methods */
static int l_udp_index(lua_State *L) {
  tt_udp *u = *(tt_udp **)lua_touserdata(L, 1);
  const char *k;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  k = lua_tostring(L, 2);
  if (k && strcmp(k, "closed") == 0) {
    lua_pushboolean(L, u == NULL || u->io.closed);
  } else if (k && u && !u->io.closed &&
             (strcmp(k, "port") == 0 || strcmp(k, "host") == 0)) {
    tt_sockaddr a;
    int len = sizeof a;
    if (uv_udp_getsockname(&u->h, &a.sa, &len) != 0) return 0;
    tk_push_sockaddr(L, &a.sa);
    if (k[0] == 'h') lua_pop(L, 1);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg udp_methods[] = {
  {"send_to", l_send_to},
  {"receive", l_receive},
  {"getsockname", l_udp_getsockname},
  {"set_broadcast", l_set_broadcast},
  {"set_multicast_loop", l_set_multicast_loop},
  {"set_multicast_ttl", l_set_multicast_ttl},
  {"join_group", l_join_group},
  {"leave_group", l_leave_group},
  {NULL, NULL}
};

static const luaL_Reg udp_funcs[] = {
  {"open", l_udp_open},
  {NULL, NULL}
};

void tt_udp_open(lua_State *L, tt_sched *S) {
  int ref = tk_io_newmeta(L, S, UDP_MT, udp_methods);
  S->io_mt[TT_MT_UDP] = ref;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_getfield(L, -1, "__index");
  lua_pushcclosure(L, l_udp_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, udp_funcs, 1);
  lua_setfield(L, -2, "udp");
}
