/* io_dns.c - names and addresses: getaddrinfo, getnameinfo, the lookups of connect and listen */
#include <stdlib.h>
#include <string.h>

#include "io.h"

#define LOOKUP_MT "tether.Lookup"

/* ---- types ------------------------------------------------------------ */

/*
** A lookup in libuv's thread pool.  Two owners share it (`refs`): the
** request until its callback ran, and the box (a small userdata on the
** task's stack) until it is collected.  NOTE: a lookup that already runs
** cannot be taken back; cancelling it abandons it (the op completes at
** once with UV_ECANCELED) and the callback discards the result; the
** request holds S->nhandles meanwhile, so tether.run waits for it.
*/
typedef struct tt_lookup {
  union {
    uv_req_t req;
    uv_getaddrinfo_t ai;
    uv_getnameinfo_t ni;
  } r;
  tt_op op;
  tt_sched *S;
  struct addrinfo *res;
  int status;
  int refs;
  uint8_t running;          /* the callback has not run yet */
  uint8_t abandoned;
} tt_lookup;

/* ---- static helpers --------------------------------------------------- */

static void ts_lookup_unref(tt_lookup *lk) {
  if (--lk->refs > 0) return;
  if (lk->res) uv_freeaddrinfo(lk->res);
  free(lk);
}

/* __gc of the box */
static int l_lookup_gc(lua_State *L) {
  tt_lookup **box = lua_touserdata(L, 1);
  if (*box) {
    (*box)->abandoned = 1;                   /* nobody reads the result */
    ts_lookup_unref(*box);
  }
  *box = NULL;
  return 0;
}

/* The callback has run: the request's share ends. */
static void ts_lookup_finish(tt_lookup *lk, int status) {
  lk->running = 0;
  lk->S->nhandles--;
  if (lk->abandoned) {
    if (lk->res) uv_freeaddrinfo(lk->res);
    lk->res = NULL;
  } else {
    lk->status = status;
    ts_op_done(&lk->op, status == UV_EAI_CANCELED ? UV_ECANCELED : status);
  }
  ts_lookup_unref(lk);
}

static void ts_on_getaddrinfo(uv_getaddrinfo_t *req, int status,
                              struct addrinfo *res) {
  tt_lookup *lk = req->data;
  lk->res = res;
  ts_lookup_finish(lk, status);
}

static void ts_on_getnameinfo(uv_getnameinfo_t *req, int status,
                              const char *host, const char *service) {
  (void)host; (void)service;                 /* they stay in req */
  ts_lookup_finish(req->data, status);
}

/* Cancel action: remove a lookup that has not started, else abandon it. */
static void ts_lookup_cancel(tt_op *op) {
  tt_lookup *lk = (tt_lookup *)((char *)op - offsetof(tt_lookup, op));
  if (uv_cancel(&lk->r.req) == 0) return;    /* callback: UV_EAI_CANCELED */
  lk->abandoned = 1;
  ts_op_done(op, UV_ECANCELED);
}

/* Push a new box with a new lookup; returns the lookup. */
static tt_lookup *tk_lookup_new(lua_State *L, tt_sched *S, const char *what) {
  tt_lookup **box = lua_newuserdatauv(L, sizeof(tt_lookup *), 0);
  tt_lookup *lk;
  *box = NULL;
  luaL_setmetatable(L, LOOKUP_MT);
  lk = calloc(1, sizeof *lk);
  if (lk == NULL) luaL_error(L, "not enough memory");
  lk->S = S;
  lk->refs = 1;                               /* the box */
  ts_op_init(&lk->op, NULL, what, ts_lookup_cancel);
  lk->op.holds_clock = 1;
  lk->r.req.data = lk;
  *box = lk;
  return lk;
}

/* The request was started: it shares the lookup until its callback. */
static void ts_lookup_started(tt_lookup *lk) {
  lk->refs++;
  lk->running = 1;
  lk->S->nhandles++;
}

/* Raise the IOError of a failed lookup of `host`. */
static int tk_lookup_error(lua_State *L, tt_sched *S, int err,
                           const char *op, const char *host) {
  tk_new_ioerror(L, S, TT_CLS_IO, err, op);
  if (host) {
    lua_pushstring(L, host);
    lua_setfield(L, -2, "host");
  }
  return lua_error(L);
}

static tt_lookup *tk_box(lua_State *L, int idx) {
  return *(tt_lookup **)lua_touserdata(L, idx);
}

/* ---- core functions --------------------------------------------------- */

/*
** Fill `addr` with the numeric address `host` and `port`; returns 0, or
** UV_EINVAL when `host` is not a numeric IPv4 or IPv6 address.
*/
int ts_ip_parse(const char *host, int port, tt_sockaddr *addr) {
  memset(addr, 0, sizeof *addr);
  if (uv_ip4_addr(host, port, &addr->in) == 0) return 0;
  if (strchr(host, ':') && uv_ip6_addr(host, port, &addr->in6) == 0) return 0;
  return UV_EINVAL;
}

/* The numeric text and port of `sa`; returns 0 or a libuv error. */
int ts_ip_name(const struct sockaddr *sa, char *host, size_t size,
               int *port) {
  int err = UV_EAFNOSUPPORT;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    err = uv_ip4_name(in, host, size);
    if (port) *port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    err = uv_ip6_name(in6, host, size);
    if (port) *port = ntohs(in6->sin6_port);
  }
  if (err) host[0] = '\0';
  return err;
}

/* Push the address and the port of `sa` (two values). */
int tk_push_sockaddr(lua_State *L, const struct sockaddr *sa) {
  char host[64];
  int port = 0;
  ts_ip_name(sa, host, sizeof host, &port);
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 2;
}

/* A port argument: an integer (or a string of digits) from `min` to 65535. */
int tk_check_port(lua_State *L, int arg, const char *fname, int min) {
  lua_Integer p = 0;
  int isint = 0;
  if (lua_type(L, arg) == LUA_TNUMBER || lua_type(L, arg) == LUA_TSTRING)
    p = lua_tointegerx(L, arg, &isint);
  if (!isint) {
    lua_pushfstring(L, "port: integer expected, got %s",
                    lua_type(L, arg) == LUA_TNUMBER ? "a fraction"
                    : luaL_typename(L, arg));
    return tk_argerror(L, arg, fname, lua_tostring(L, -1));
  }
  if (p < min || p > 65535) {
    lua_pushfstring(L, "port out of range (%d..65535)", min);
    return tk_argerror(L, arg, fname, lua_tostring(L, -1));
  }
  return (int)p;
}

/*
** Resolve `host` for connect or listen: push a box, start the lookup and
** block the running task `t`; `k` continues with the box on top, and gets
** the addresses from tk_lookup_result.
*/
int tk_lookup(lua_State *L, tt_sched *S, tt_task *t, const char *host,
              int socktype, int flags, lua_KFunction k) {
  struct addrinfo hints;
  tt_lookup *lk = tk_lookup_new(L, S, "getaddrinfo");
  int err;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = flags;
  err = uv_getaddrinfo(S->loop, &lk->r.ai, ts_on_getaddrinfo, host, NULL,
                       &hints);
  if (err) return tk_lookup_error(L, S, err, "getaddrinfo", host);
  ts_lookup_started(lk);
  return tk_op_await(L, t, &lk->op, k);
}

/* In the continuation of tk_lookup: the addresses (owned by the box at
** `boxidx`), or Cancelled, or the lookup's IOError. */
struct addrinfo *tk_lookup_result(lua_State *L, int boxidx,
                                  const char *host) {
  tt_lookup *lk = tk_box(L, boxidx);
  tk_op_cancelled(L, &lk->op);
  if (lk->op.result < 0)
    tk_lookup_error(L, lk->S, (int)lk->op.result, "getaddrinfo", host);
  return lk->res;
}

/* ---- bindings --------------------------------------------------------- */

/* Stack of getaddrinfo: 1 host, 2 service, 3 opts, 4 box */
static int k_getaddrinfo(lua_State *L, int status, lua_KContext ctx) {
  const char *host = lua_tostring(L, 1);
  struct addrinfo *ai;
  int i = 0, with_port = !lua_isnil(L, 2);
  (void)status; (void)ctx;
  ai = tk_lookup_result(L, 4, host);
  lua_newtable(L);
  for (; ai; ai = ai->ai_next) {
    char name[64];
    int port;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    if (ts_ip_name(ai->ai_addr, name, sizeof name, &port)) continue;
    lua_createtable(L, 0, 3);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "addr");
    lua_pushstring(L, ai->ai_family == AF_INET ? "inet" : "inet6");
    lua_setfield(L, -2, "family");
    if (with_port) {
      lua_pushinteger(L, port);
      lua_setfield(L, -2, "port");
    }
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

static const char *const gai_keys[] = {"family", "type", NULL};

/* tether.dns.getaddrinfo(host [, service [, opts]]) -> { {addr=, family=, port=}, ... }
**   opts.family: "inet" | "inet6"; opts.type: "stream" (default) | "dgram" */
static int l_getaddrinfo(lua_State *L) {
  static const char *fname = "tether.dns.getaddrinfo";
  tt_sched *S = TT_UPSCHED(L);
  struct addrinfo hints;
  const char *host, *service = NULL, *fam, *type;
  int hasopts, err;
  tt_task *t;
  tt_lookup *lk;
  host = tk_check_cstr(L, 1, fname, "host", NULL);
  if (!lua_isnoneornil(L, 2))
    service = tk_check_cstr(L, 2, fname, "service", NULL);
  hasopts = tk_check_opts(L, 3, fname, gai_keys) ? 3 : 0;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  fam = tk_opt_str(L, hasopts, "family", fname);
  if (fam) {
    if (strcmp(fam, "inet") == 0) hints.ai_family = AF_INET;
    else if (strcmp(fam, "inet6") == 0) hints.ai_family = AF_INET6;
    else tk_argerror(L, 3, fname, "option 'family': \"inet\" or \"inet6\" expected");
  }
  type = tk_opt_str(L, hasopts, "type", fname);
  if (type) {
    if (strcmp(type, "dgram") == 0) hints.ai_socktype = SOCK_DGRAM;
    else if (strcmp(type, "stream") != 0)
      tk_argerror(L, 3, fname, "option 'type': \"stream\" or \"dgram\" expected");
  }
  t = tk_current(L, S, fname);
  lua_settop(L, 3);
  if (ts_cancelled(t)) return tk_raise_cancelled(L, S, ts_cancelled(t));
  lk = tk_lookup_new(L, S, "getaddrinfo");
  err = uv_getaddrinfo(S->loop, &lk->r.ai, ts_on_getaddrinfo, host, service,
                       &hints);
  if (err) return tk_lookup_error(L, S, err, "getaddrinfo", host);
  ts_lookup_started(lk);
  return tk_op_await(L, t, &lk->op, k_getaddrinfo);
}

/* Stack of getnameinfo: 1 addr, 2 port, 3 box */
static int k_getnameinfo(lua_State *L, int status, lua_KContext ctx) {
  tt_lookup *lk = tk_box(L, 3);
  (void)status; (void)ctx;
  tk_op_cancelled(L, &lk->op);
  if (lk->op.result < 0)
    return tk_lookup_error(L, lk->S, (int)lk->op.result, "getnameinfo",
                           lua_tostring(L, 1));
  lua_pushstring(L, lk->r.ni.host);
  lua_pushstring(L, lk->r.ni.service);
  return 2;
}

/* tether.dns.getnameinfo(addr [, port]) -> host, service */
static int l_getnameinfo(lua_State *L) {
  static const char *fname = "tether.dns.getnameinfo";
  tt_sched *S = TT_UPSCHED(L);
  const char *host = tk_check_cstr(L, 1, fname, "address", NULL);
  int port = lua_isnoneornil(L, 2) ? 0 : tk_check_port(L, 2, fname, 0);
  tt_sockaddr addr;
  tt_lookup *lk;
  tt_task *t;
  int err;
  if (ts_ip_parse(host, port, &addr))
    tk_argerror(L, 1, fname, "numeric IPv4 or IPv6 address expected");
  t = tk_current(L, S, fname);
  lua_settop(L, 2);
  if (ts_cancelled(t)) return tk_raise_cancelled(L, S, ts_cancelled(t));
  lk = tk_lookup_new(L, S, "getnameinfo");
  err = uv_getnameinfo(S->loop, &lk->r.ni, ts_on_getnameinfo, &addr.sa, 0);
  if (err) return tk_lookup_error(L, S, err, "getnameinfo", host);
  ts_lookup_started(lk);
  return tk_op_await(L, t, &lk->op, k_getnameinfo);
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg dns_funcs[] = {
  {"getaddrinfo", l_getaddrinfo},
  {"getnameinfo", l_getnameinfo},
  {NULL, NULL}
};

void tt_dns_open(lua_State *L, tt_sched *S) {
  luaL_newmetatable(L, LOOKUP_MT);
  lua_pushcfunction(L, l_lookup_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, dns_funcs, 1);
  lua_setfield(L, -2, "dns");
}
