/* io_unix.c - local (Unix domain) sockets: connect, listen, serve over io_listen.c */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "io.h"

#define BACKLOG 511
#define UCONN_MT "tether.UnixConnect"

/* ---- types ------------------------------------------------------------ */

/* A connect: shared by the box on the task's stack and the request until
** its callback ran. */
typedef struct tt_uconn {
  tt_op op;
  uv_connect_t req;
  tt_stream *s;
  int refs;
} tt_uconn;

/* ---- static helpers --------------------------------------------------- */

static void unix_describe(lua_State *L, tt_io *io) {
  tt_stream *s = (tt_stream *)io;
  char buf[256];
  size_t len = sizeof buf;
  int err = s->opened ? uv_pipe_getpeername(&s->h.pipe, buf, &len) : UV_EBADF;
  if (err && s->opened) {
    len = sizeof buf;
    err = uv_pipe_getsockname(&s->h.pipe, buf, &len);
  }
  lua_pushliteral(L, "unix");
  if (err == 0 && len > 0) {
    lua_pushliteral(L, " ");
    lua_pushlstring(L, buf, len);
    lua_concat(L, 3);
  }
}

static void unix_listener_describe(lua_State *L, tt_io *io) {
  tt_listener *l = (tt_listener *)io;
  lua_pushfstring(L, "unix listener %s", l->path ? l->path : "?");
}

static const tt_io_kind unix_stream_kind = {"unix", ts_stream_close,
                                            unix_describe};
static const tt_io_kind unix_listener_kind = {"unix listener",
                                              ts_listener_close,
                                              unix_listener_describe};

static int unix_stream_init(uv_loop_t *loop, tt_stream *s) {
  return uv_pipe_init(loop, &s->h.pipe, 0);
}

static int tk_unix_error(lua_State *L, tt_sched *S, int err, const char *op,
                         const char *path) {
  tk_new_ioerror(L, S, TT_CLS_IO, err, op);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  return lua_error(L);
}

/* A socket path at `arg`: no NUL, shorter than sun_path. */
static const char *tk_check_path(lua_State *L, int arg, const char *fname,
                                 const char *op) {
  size_t len;
  const char *path = tk_check_cstr(L, arg, fname, "path", &len);
  if (len == 0) tk_argerror(L, arg, fname, "path: empty");
  if (len >= sizeof(((struct sockaddr_un *)0)->sun_path))
    tk_unix_error(L, TT_UPSCHED(L), UV_ENAMETOOLONG, op, path);
  return path;
}

static void ts_uconn_unref(tt_uconn *c) {
  if (--c->refs == 0) free(c);
}

static int l_uconn_gc(lua_State *L) {
  tt_uconn **box = lua_touserdata(L, 1);
  if (*box) ts_uconn_unref(*box);
  *box = NULL;
  return 0;
}

static void ts_on_uconnect(uv_connect_t *req, int status) {
  tt_uconn *c = req->data;
  ts_op_done(&c->op, status);
  ts_uconn_unref(c);
}

/* Cancel action: close the stream; its callback ends with UV_ECANCELED. */
static void ts_uconn_cancel(tt_op *op) {
  ts_io_close(&((tt_uconn *)op)->s->io);
}

/* Stack of connect: 1 path, 2 box, 3 stream */
static int k_uconnect(lua_State *L, int status, lua_KContext ctx) {
  tt_uconn *c = *(tt_uconn **)lua_touserdata(L, 2);
  (void)status; (void)ctx;
  tk_op_cancelled(L, &c->op);
  if (c->op.result < 0) {
    ts_io_close(&c->s->io);
    return tk_unix_error(L, TT_UPSCHED(L), (int)c->op.result, "connect",
                         lua_tostring(L, 1));
  }
  return 1;
}

/* The permissions of opts.mode: an integer, or octal digits in a string. */
static int opt_mode(lua_State *L, int o, const char *fname) {
  int ty = tk_opt_field(L, o, "mode"), mode = -1;
  if (ty == LUA_TNUMBER && lua_isinteger(L, -1)) {
    mode = (int)lua_tointeger(L, -1);
  } else if (ty == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    char *end;
    long m = strtol(s, &end, 8);
    mode = (*s && *end == '\0') ? (int)m : -2;
  } else if (ty != LUA_TNIL) {
    mode = -2;
  }
  if (mode < -1 || mode > 07777)
    tk_argerror(L, o, fname,
                "option 'mode': permissions expected (as 384 or \"0600\")");
  lua_pop(L, 1);
  return mode;
}

static const char *const listen_keys[] = {"mode", "backlog", NULL};
static const char *const serve_keys[] = {"mode", "backlog", "limit", NULL};

/* Check listen's or serve's path at `arg` and options at arg + 1. */
static void tk_check_listen_args(lua_State *L, int arg, const char *fname,
                                 const char *const keys[]) {
  int o;
  tk_check_path(L, arg, fname, "listen");
  o = tk_check_opts(L, arg + 1, fname, keys) ? arg + 1 : 0;
  opt_mode(L, o, fname);
  if (o && tk_opt_field(L, o, "backlog") != LUA_TNIL) {
    int isint;
    lua_Integer b = lua_tointegerx(L, -1, &isint);
    if (lua_type(L, -1) != LUA_TNUMBER || !isint || b < 1 || b > 0x7fffffff)
      tk_argerror(L, o, fname, "option 'backlog': positive integer expected");
  }
  if (o) lua_pop(L, 1);
}

/* listen(path [, opts]) once checked: push the listener. */
static int tk_unix_listen(lua_State *L, const char *fname) {
  tt_sched *S = TT_UPSCHED(L);
  const char *path = lua_tostring(L, 1);
  int o = lua_istable(L, 2) ? 2 : 0, mode = opt_mode(L, o, fname);
  int backlog = BACKLOG, err;
  tt_listener *l;
  struct stat st;
  if (o && tk_opt_field(L, o, "backlog") != LUA_TNIL)
    backlog = (int)lua_tointeger(L, -1);
  if (o) lua_pop(L, 1);
  lua_settop(L, 2);
  l = tk_listener_new(L, S, &unix_listener_kind);
  l->skind = &unix_stream_kind;
  l->init = unix_stream_init;
  err = uv_pipe_init(S->loop, &l->h.pipe, 0);
  if (err == 0) {
    l->h.handle.data = l;
    l->opened = 1;
    ts_io_hold(&l->io);
    err = uv_pipe_bind(&l->h.pipe, path);
  }
  if (err == 0) {                   /* the file is ours from here on */
    l->path = strdup(path);
    if (l->path == NULL) err = UV_ENOMEM;
    else if (stat(path, &st) == 0) {
      l->dev = (unsigned long)st.st_dev;
      l->ino = (unsigned long)st.st_ino;
    }
  }
  if (err == 0 && mode >= 0 && chmod(path, (mode_t)mode) != 0)
    err = -errno;
  if (err == 0) err = tk_listener_start(L, l, backlog);
  if (err) {
    ts_io_close(&l->io);
    return tk_unix_error(L, S, err, "listen", path);
  }
  return 1;
}

/* ---- bindings --------------------------------------------------------- */

/* tether.unix.connect(path) -> stream */
static int l_unix_connect(lua_State *L) {
  static const char *fname = "tether.unix.connect";
  tt_sched *S = TT_UPSCHED(L);
  const char *path = tk_check_path(L, 1, fname, "connect");
  tt_task *t = tk_current(L, S, fname);
  tt_uconn **box, *c;
  tt_stream *s;
  int err;
  lua_settop(L, 1);
  if (ts_cancelled(t)) return tk_raise_cancelled(L, S, ts_cancelled(t));
  box = lua_newuserdatauv(L, sizeof(tt_uconn *), 0);
  *box = NULL;
  luaL_setmetatable(L, UCONN_MT);
  c = calloc(1, sizeof *c);
  if (c == NULL) return luaL_error(L, "not enough memory");
  *box = c;
  c->refs = 1;
  ts_op_init(&c->op, NULL, "connect", ts_uconn_cancel);
  c->op.holds_clock = 1;
  s = tk_stream_new(L, S, &unix_stream_kind);
  err = uv_pipe_init(S->loop, &s->h.pipe, 0);
  if (err) return tk_unix_error(L, S, err, "connect", path);
  ts_stream_opened(s);
  c->s = s;
  c->req.data = c;
  c->refs++;
  uv_pipe_connect(&c->req, &s->h.pipe, path, ts_on_uconnect);
  c->op.io = &s->io;
  return tk_op_await(L, t, &c->op, k_uconnect);
}

/* tether.unix.listen(path [, opts]) -> listener   (opts.mode, opts.backlog) */
static int l_unix_listen(lua_State *L) {
  tk_check_listen_args(L, 1, "tether.unix.listen", listen_keys);
  return tk_unix_listen(L, "tether.unix.listen");
}

static int l_unix_listen_serve(lua_State *L) {
  return tk_unix_listen(L, "tether.unix.serve");
}

/* tether.unix.serve([started,] handler, path [, opts])  (opts.mode, backlog, limit) */
static int l_unix_serve(lua_State *L) {
  static const char *fname = "tether.unix.serve";
  int base = tk_is_callable(L, 1) && tk_is_callable(L, 2) ? 2 : 1;
  tk_check_listen_args(L, base + 1, fname, serve_keys);
  return tk_serve(L, fname, l_unix_listen_serve);
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg unix_funcs[] = {
  {"connect", l_unix_connect},
  {"listen", l_unix_listen},
  {"serve", l_unix_serve},
  {NULL, NULL}
};

void tt_unix_open(lua_State *L, tt_sched *S) {
  luaL_newmetatable(L, UCONN_MT);
  lua_pushcfunction(L, l_uconn_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, unix_funcs, 1);
  lua_setfield(L, -2, "unix");
}
