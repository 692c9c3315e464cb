/* io_stream.c - byte streams over uv_stream_t: buffered reads scanned in C, writes with backpressure */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "io.h"

/*
** The read side.  Bytes from the kernel are appended to s->buf; a read
** takes them from there.  While a read waits, rmode says what it needs,
** and the read callback wakes the task only once that is there (a line's
** end, n bytes, EOF), so a long line costs no task switch per chunk.
** Reading from the kernel stops above s->rlimit unread bytes: 64 KiB, or
** what the pending read needs.
*/
enum { RM_NONE, RM_SOME, RM_EXACT, RM_LINE, RM_UNTIL, RM_ALL };

#define TT_STREAM_LIMIT 65536
#define TT_SCRATCH 65536

/* ---- static helpers --------------------------------------------------- */

static size_t avail(tt_stream *s) { return s->end - s->start; }

/* Room for `n` more bytes at the end of the buffer; 0 when out of memory. */
static int reserve(tt_stream *s, size_t n) {
  size_t len = avail(s), cap;
  char *nb;
  if (s->cap - s->end >= n) return 1;
  if (s->start > 0 && s->cap - len >= n && s->start >= len) {
    memmove(s->buf, s->buf + s->start, len);
    s->scan -= s->start;
    s->start = 0;
    s->end = len;
    return 1;
  }
  cap = s->cap ? s->cap : 4096;
  while (cap - len < n) cap *= 2;
  nb = malloc(cap);
  if (nb == NULL) return 0;
  if (len) memcpy(nb, s->buf + s->start, len);
  free(s->buf);
  s->buf = nb;
  s->scan -= s->start;
  s->start = 0;
  s->end = len;
  s->cap = cap;
  return 1;
}

/* Take `n` bytes off the front. */
static void consume(tt_stream *s, size_t n) {
  s->start += n;
  if (s->scan < s->start) s->scan = s->start;
  if (s->start == s->end) {
    s->start = s->end = s->scan = 0;
    if (s->cap > 4 * TT_STREAM_LIMIT) {   /* a big read is over: give it back */
      free(s->buf);
      s->buf = NULL;
      s->cap = 0;
    }
  }
}

/* The offset of `sep` in the unread bytes, searching from s->scan, or -1;
** advances s->scan past what cannot start a match. */
static ptrdiff_t find_sep(tt_stream *s, const char *sep, size_t seplen) {
  const char *b = s->buf;
  size_t i = s->scan;
  if (seplen == 1) {
    const char *p = s->end > i ? memchr(b + i, sep[0], s->end - i) : NULL;
    if (p) return (p - b) - (ptrdiff_t)s->start;
    s->scan = s->end;
    return -1;
  }
  for (; i + seplen <= s->end; i++) {
    if (b[i] == sep[0] && memcmp(b + i, sep, seplen) == 0)
      return (ptrdiff_t)(i - s->start);
  }
  s->scan = s->end >= seplen ? s->end - seplen + 1 : s->start;
  if (s->scan < s->start) s->scan = s->start;
  return -1;
}

/* Has the pending read what it needs (or can it not get more)? */
static int satisfied(tt_stream *s) {
  size_t n = avail(s);
  if (s->eof || s->rerr) return 1;
  switch (s->rmode) {
    case RM_SOME: return n > 0;
    case RM_EXACT: return n >= s->rneed;
    case RM_LINE: return find_sep(s, "\n", 1) >= 0 || n > s->rneed;
    case RM_UNTIL: return find_sep(s, s->sep, s->seplen) >= 0 ||
                          n > s->rneed + s->seplen;
    case RM_ALL: return n > s->rneed;
    default: return 0;
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  tt_stream *s = h->data;
  tt_sched *S = s->io.S;
  (void)hint;
  if (S->scratch == NULL) S->scratch = malloc(TT_SCRATCH);
  buf->base = S->scratch;
  buf->len = S->scratch ? TT_SCRATCH : 0;
}

static void stop_reading(tt_stream *s) {
  if (s->reading) {
    uv_read_stop(&s->h.stream);
    s->reading = 0;
  }
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  tt_stream *s = h->data;
  if (nread > 0) {
    if (!reserve(s, (size_t)nread)) {
      s->rerr = UV_ENOMEM;
      stop_reading(s);
    } else {
      memcpy(s->buf + s->end, buf->base, (size_t)nread);
      s->end += (size_t)nread;
      if (avail(s) > s->rlimit) stop_reading(s);
    }
  } else if (nread == UV_EOF) {
    s->eof = 1;
    stop_reading(s);
  } else if (nread < 0) {
    s->rerr = (int)nread;
    stop_reading(s);
  } else {
    return;                                   /* EAGAIN: nothing */
  }
  if (s->rop.task && satisfied(s)) ts_op_done(&s->rop, 0);
}

/* A read's cancel action: bytes stay buffered, nothing to take back. */
static void cancel_read(tt_op *op) {
  ts_op_done(op, UV_ECANCELED);
}

/* A write's (or close_write's) cancel action: libuv cannot take back
** queued bytes, so the stream is closed; the callback then comes with
** UV_ECANCELED.  A standard stream is never closed: its write completes,
** then k_write raises Cancelled (§6.6). */
static void cancel_write(tt_op *op) {
  if (((tt_stream *)op->io)->is_std) return;
  ts_io_close(op->io);
}

static void on_close(uv_handle_t *h) {
  tt_stream *s = h->data;
  free(s->buf);
  s->buf = NULL;
  ts_io_release(&s->io);
}

static void on_write(uv_write_t *req, int status) {
  tt_stream *s = req->data;
  ts_op_done(&s->wop, status);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  tt_stream *s = req->data;
  ts_op_done(&s->wop, status);
}

/* Raise the read error `err` for operation `op`. */
static int raise_rerr(lua_State *L, tt_stream *s, int err, const char *op) {
  tk_new_ioerror(L, s->io.S, err == UV_ENOBUFS ? TT_CLS_IO : ts_errcls(err),
                 err, op);
  return lua_error(L);
}

static int raise_incomplete(lua_State *L, tt_stream *s, const char *op) {
  tk_new_ioerror(L, s->io.S, TT_CLS_INCOMPLETE, 0, op);
  lua_pushliteral(L, "EOF");
  lua_setfield(L, -2, "code");
  lua_pushliteral(L, "end of stream before the read was complete");
  lua_setfield(L, -2, "message");
  lua_pushlstring(L, s->buf + s->start, avail(s));
  lua_setfield(L, -2, "partial");
  consume(s, avail(s));
  return lua_error(L);
}

static const char *const mode_op[] = {
  "read", "read", "read_exactly", "read_line", "read_until", "read_all"
};

/*
** Try to complete the read of mode `mode` (arguments on the stack as the
** binding got them).  Returns the number of results, or -1 when it must
** wait.  Raises on errors.
*/
static int try_read(lua_State *L, tt_stream *s, int mode) {
  size_t n = avail(s);
  ptrdiff_t at;
  const char *op = mode_op[mode];
  switch (mode) {
    case RM_SOME: {
      if (n > 0) {
        size_t k = n < s->rneed ? n : s->rneed;
        lua_pushlstring(L, s->buf + s->start, k);
        consume(s, k);
        return 1;
      }
      if (s->rerr) return raise_rerr(L, s, s->rerr, op);
      if (s->eof) { lua_pushnil(L); return 1; }
      return -1;
    }
    case RM_EXACT:
      if (n >= s->rneed) {
        lua_pushlstring(L, s->buf + s->start, s->rneed);
        consume(s, s->rneed);
        return 1;
      }
      if (s->rerr) return raise_rerr(L, s, s->rerr, op);
      if (s->eof) return raise_incomplete(L, s, op);
      return -1;
    case RM_LINE:
    case RM_UNTIL: {
      const char *sep = mode == RM_LINE ? "\n" : s->sep;
      size_t seplen = mode == RM_LINE ? 1 : s->seplen;
      int keep = mode == RM_UNTIL || lua_toboolean(L, -1);
      at = find_sep(s, sep, seplen);
      if (at >= 0) {
        size_t len = (size_t)at, take = (size_t)at + seplen;
        if (len > s->rneed) return raise_rerr(L, s, UV_ENOBUFS, op);
        if (!keep) {
          if (len > 0 && s->buf[s->start + len - 1] == '\r') len--;
        } else {
          len = take;
        }
        lua_pushlstring(L, s->buf + s->start, len);
        consume(s, take);
        return 1;
      }
      if (n > s->rneed + (mode == RM_UNTIL ? seplen : 0))
        return raise_rerr(L, s, UV_ENOBUFS, op);
      if (s->rerr && n == 0) return raise_rerr(L, s, s->rerr, op);
      if (s->eof || s->rerr) {
        if (mode == RM_UNTIL) return raise_incomplete(L, s, op);
        if (n == 0) {
          if (s->rerr) return raise_rerr(L, s, s->rerr, op);
          lua_pushnil(L);
          return 1;
        }
        lua_pushlstring(L, s->buf + s->start, n);
        consume(s, n);
        return 1;
      }
      return -1;
    }
    case RM_ALL:
      if (n > s->rneed) return raise_rerr(L, s, UV_ENOBUFS, op);
      if (s->rerr) return raise_rerr(L, s, s->rerr, op);
      if (s->eof) {
        lua_pushlstring(L, s->buf + s->start, n);
        consume(s, n);
        return 1;
      }
      return -1;
    default:
      return 0;
  }
}

static int k_read(lua_State *L, int status, lua_KContext ctx);

/* A standard stream on a regular file: read what the read needs with
** plain read() (a file never blocks for long), then one scheduler turn. */
static int file_read(lua_State *L, tt_stream *s, int mode) {
  int n;
  s->rmode = mode;
  while (!satisfied(s)) {
    ssize_t r;
    if (!reserve(s, TT_STREAM_LIMIT)) {
      s->rerr = UV_ENOMEM;
      break;
    }
    r = read(s->fd, s->buf + s->end, s->cap - s->end);
    if (r > 0) s->end += (size_t)r;
    else if (r == 0) s->eof = 1;
    else if (errno != EINTR) s->rerr = uv_translate_sys_error(errno);
  }
  n = try_read(L, s, mode);
  s->rmode = RM_NONE;
  return tk_yield_results(L, n);
}

/* ... and write every byte with plain write(); 0 or a libuv error. */
static int file_write(tt_stream *s, uv_buf_t *bufs, int nb) {
  int i = 0;
  while (i < nb) {
    ssize_t r = writev(s->fd, (struct iovec *)(bufs + i), nb - i);
    if (r < 0) {
      if (errno == EINTR) continue;
      return uv_translate_sys_error(errno);
    }
    while (i < nb && (size_t)r >= bufs[i].len) r -= (ssize_t)bufs[i++].len;
    if (i < nb) {
      bufs[i].base += r;
      bufs[i].len -= (size_t)r;
    }
  }
  return 0;
}

/* Wait for more bytes, then try again (in k_read). */
static int wait_read(lua_State *L, tt_stream *s, tt_task *t, int mode) {
  size_t need = TT_STREAM_LIMIT;
  if (s->is_std == TT_STD_FILE) return file_read(L, s, mode);
  s->rmode = mode;
  if (mode == RM_EXACT || mode == RM_LINE || mode == RM_ALL)
    need = s->rneed + 1;
  else if (mode == RM_UNTIL)
    need = s->rneed + s->seplen + 1;
  if (mode == RM_ALL && s->rneed == (size_t)-1) need = (size_t)-1;
  s->rlimit = need > TT_STREAM_LIMIT ? need : TT_STREAM_LIMIT;
  if (!s->reading) {
    int r = uv_read_start(&s->h.stream, on_alloc, on_read);
    if (r < 0) return raise_rerr(L, s, r, mode_op[mode]);
    s->reading = 1;
  }
  return tk_op_await(L, t, &s->rop, k_read);
}

static int k_read(lua_State *L, int status, lua_KContext ctx) {
  tt_stream *s = (tt_stream *)((tt_op *)ctx)->io;
  int mode = s->rmode, n;
  (void)status;
  s->rmode = RM_NONE;
  s->rlimit = TT_STREAM_LIMIT;
  if (s->rop.result == UV_EBADF || s->io.closed)
    return tk_raise_closed(L, TT_UPSCHED(L), mode_op[mode]);
  tk_op_cancelled(L, &s->rop);
  n = try_read(L, s, mode);
  if (n >= 0) return n;
  return wait_read(L, s, TT_UPSCHED(L)->current, mode);
}

/* The shared start of every read: checks, the checkpoint, a first try. */
static int do_read(lua_State *L, tt_stream *s, int mode) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *t = tk_current(L, S, mode == RM_SOME ? "s:read" : mode_op[mode]);
  tt_scope *c;
  int n;
  if (s->rop.task) {
    tk_new_ioerror(L, S, TT_CLS_BUSY, UV_EBUSY, mode_op[mode]);
    lua_pushliteral(L, "another task is already reading this stream");
    lua_setfield(L, -2, "message");
    return lua_error(L);
  }
  if ((c = ts_cancelled(t)) != NULL) return tk_raise_cancelled(L, S, c);
  s->rmode = mode;
  s->scan = s->start;
  n = try_read(L, s, mode);
  s->rmode = RM_NONE;
  if (n >= 0) return tk_yield_results(L, n);
  ts_op_init(&s->rop, &s->io, mode_op[mode], cancel_read);
  return wait_read(L, s, t, mode);
}

/* opts.max of a read_* call at `arg` (default 65536). */
static size_t opt_max(lua_State *L, int arg, const char *fname,
                      const char *const keys[], size_t def) {
  lua_Number m;
  tk_check_opts(L, arg, fname, keys);
  m = tk_opt_num(L, lua_istable(L, arg) ? arg : 0, "max", -1, fname);
  if (m == -1) return def;
  if (m < 1) tk_argerror(L, arg - 1, fname, "option 'max': a size of at least 1 expected");
  return m >= 9e15 ? (size_t)-1 : (size_t)m;
}

/* ---- core functions --------------------------------------------------- */

/* Push a new stream object whose handle the caller initialises next. */
tt_stream *tk_stream_new(lua_State *L, tt_sched *S, const tt_io_kind *kind) {
  tt_stream *s = tk_io_new(L, S, sizeof(tt_stream), kind,
                           S->io_mt[TT_MT_STREAM]);
  s->rlimit = TT_STREAM_LIMIT;
  s->h.handle.data = s;
  s->wreq.data = s;
  s->sreq.data = s;
  ts_op_init(&s->rop, &s->io, "read", cancel_read);
  ts_op_init(&s->wop, &s->io, "write", cancel_write);
  return s;
}

/* The handle was initialised: it holds the object until closed. */
void ts_stream_opened(tt_stream *s) {
  s->opened = 1;
  s->h.handle.data = s;
  ts_io_hold(&s->io);
}

/* The usual close of a stream kind: a waiting reader gets
** ClosedResourceError; a pending write completes with UV_ECANCELED. */
void ts_stream_close(tt_io *io) {
  tt_stream *s = (tt_stream *)io;
  stop_reading(s);
  if (s->rop.task) ts_op_done(&s->rop, UV_EBADF);
  if (s->opened && !uv_is_closing(&s->h.handle))
    uv_close(&s->h.handle, on_close);
  else if (!s->opened) {
    free(s->buf);
    s->buf = NULL;
  }
}

/* The open stream `self` (argument 1); `what` names the method, `op` the
** operation. */
tt_stream *tk_stream_check(lua_State *L, const char *what,
                           const char *op) {
  tt_sched *S = TT_UPSCHED(L);
  return (tt_stream *)tk_io_checkopen(L, S->io_mt[TT_MT_STREAM], what,
                                      op);
}

/* Add methods (upvalue: the scheduler) to every stream. */
void tk_stream_add_methods(lua_State *L, tt_sched *S, const luaL_Reg *m) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->io_mt[TT_MT_STREAM]);
  lua_getfield(L, -1, "__index");
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, m, 1);
  lua_pop(L, 2);
}

/* ---- bindings --------------------------------------------------------- */

static const char *const max_keys[] = { "max", NULL };
static const char *const line_keys[] = { "max", "keep", NULL };

/* s:read([max]) -> 1..max bytes, or nil at EOF */
static int l_read(lua_State *L) {
  tt_stream *s = tk_stream_check(L, "s:read", "read");
  lua_Integer max = 65536;
  if (!lua_isnoneornil(L, 2)) {
    int isint;
    max = lua_tointegerx(L, 2, &isint);
    if (!isint || lua_type(L, 2) != LUA_TNUMBER)
      tk_argerror(L, 1, "s:read", "integer expected");
    if (max < 1) tk_argerror(L, 1, "s:read", "a size of at least 1 expected");
  }
  lua_settop(L, 1);
  s->rneed = (size_t)max;
  return do_read(L, s, RM_SOME);
}

/* s:read_exactly(n) -> n bytes, or IncompleteReadError */
static int l_read_exactly(lua_State *L) {
  tt_stream *s = tk_stream_check(L, "s:read_exactly", "read_exactly");
  lua_Integer n;
  int isint;
  n = lua_tointegerx(L, 2, &isint);
  if (!isint || lua_type(L, 2) != LUA_TNUMBER)
    tk_argerror(L, 1, "s:read_exactly", "integer expected");
  if (n < 1) tk_argerror(L, 1, "s:read_exactly", "a size of at least 1 expected");
  lua_settop(L, 1);
  s->rneed = (size_t)n;
  return do_read(L, s, RM_EXACT);
}

/* s:read_line([opts]) -> line, or nil at EOF */
static int l_read_line(lua_State *L) {
  tt_stream *s = tk_stream_check(L, "s:read_line", "read_line");
  size_t max = opt_max(L, 2, "s:read_line", line_keys, 65536);
  int keep = tk_opt_bool(L, lua_istable(L, 2) ? 2 : 0, "keep", 0,
                         "s:read_line");
  lua_settop(L, 1);
  lua_pushboolean(L, keep);                   /* try_read reads it on top */
  s->rneed = max;
  return do_read(L, s, RM_LINE);
}

/* s:read_until(sep [, opts]) -> text up to and including sep */
static int l_read_until(lua_State *L) {
  tt_stream *s = tk_stream_check(L, "s:read_until", "read_until");
  size_t max;
  if (lua_type(L, 2) != LUA_TSTRING)
    tk_argerror(L, 1, "s:read_until", "string expected");
  s->sep = lua_tolstring(L, 2, &s->seplen);
  if (s->seplen == 0) tk_argerror(L, 1, "s:read_until", "non-empty string expected");
  max = opt_max(L, 3, "s:read_until", max_keys, 65536);
  lua_settop(L, 2);                           /* sep stays on the stack */
  s->rneed = max;
  return do_read(L, s, RM_UNTIL);
}

/* s:read_all([opts]) -> everything until EOF */
static int l_read_all(lua_State *L) {
  tt_stream *s = tk_stream_check(L, "s:read_all", "read_all");
  size_t max = opt_max(L, 2, "s:read_all", max_keys, (size_t)-1);
  lua_settop(L, 1);
  s->rneed = max;
  return do_read(L, s, RM_ALL);
}

static int l_lines_iter(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, lua_upvalueindex(3));
  return l_read_line(L);
}

/* s:lines([opts]) -> iterator of read_line(opts) */
static int l_lines(lua_State *L) {
  tk_stream_check(L, "s:lines", "lines");
  opt_max(L, 2, "s:lines", line_keys, 65536);
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_pushcclosure(L, l_lines_iter, 3);
  return 1;
}

static int k_write(lua_State *L, int status, lua_KContext ctx) {
  tt_stream *s = (tt_stream *)((tt_op *)ctx)->io;
  intptr_t r = s->wop.result;
  (void)status;
  if (s->is_std && s->wop.cancelling) {    /* it completed: now raise */
    tt_scope *c = ts_cancelled(TT_UPSCHED(L)->current);
    if (c) return tk_raise_cancelled(L, TT_UPSCHED(L), c);
  }
  tk_op_cancelled(L, &s->wop);
  if (r == UV_ECANCELED || r == UV_EBADF || (r < 0 && s->io.closed))
    return tk_raise_closed(L, TT_UPSCHED(L), s->wop.what);
  if (r < 0) {
    tk_new_ioerror(L, s->io.S, TT_CLS_BROKEN, (int)r, s->wop.what);
    return lua_error(L);
  }
  lua_settop(L, 1);
  return 1;
}

#define TT_WBUFS 16

/* s:write(data, ...) -> s, once the kernel has every byte */
static int l_write(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_stream *s = tk_stream_check(L, "s:write", "write");
  int n = lua_gettop(L) - 1, i, nb = 0, r;
  uv_buf_t small[TT_WBUFS], *bufs = small;
  size_t total = 0;
  tt_task *t;
  tt_scope *c;
  for (i = 2; i <= n + 1; i++) {
    int ty = lua_type(L, i);
    if (ty != LUA_TSTRING && ty != LUA_TNUMBER) {
      lua_pushfstring(L, "string expected, got %s", luaL_typename(L, i));
      tk_argerror(L, i - 1, "s:write", lua_tostring(L, -1));
    }
    if (ty == LUA_TNUMBER) {
      lua_pushvalue(L, i);
      lua_tostring(L, -1);
      lua_replace(L, i);
    }
  }
  t = tk_current(L, S, "s:write");
  if (s->wshut) return tk_raise_closed(L, S, "write");
  if (s->wop.task) {
    tk_new_ioerror(L, S, TT_CLS_BUSY, UV_EBUSY, "write");
    lua_pushliteral(L, "another task is already writing to this stream");
    lua_setfield(L, -2, "message");
    return lua_error(L);
  }
  if ((c = ts_cancelled(t)) != NULL) return tk_raise_cancelled(L, S, c);
  if (n > TT_WBUFS)
    bufs = lua_newuserdatauv(L, sizeof(uv_buf_t) * (size_t)n, 0);
  for (i = 0; i < n; i++) {
    size_t len;
    const char *p = lua_tolstring(L, i + 2, &len);
    if (len == 0) continue;
    bufs[nb++] = uv_buf_init((char *)p, (unsigned)len);
    total += len;
  }
  if (total == 0) {
    lua_settop(L, 1);
    return tk_yield_results(L, 1);
  }
  if (s->is_std == TT_STD_FILE) {
    r = file_write(s, bufs, nb);
    if (r < 0) {
      tk_new_ioerror(L, S, TT_CLS_BROKEN, r, "write");
      return lua_error(L);
    }
    lua_settop(L, 1);
    return tk_yield_results(L, 1);
  }
  r = uv_try_write(&s->h.stream, bufs, (unsigned)nb);
  if (r == UV_EAGAIN || r == UV_ENOSYS) r = 0;
  if (r < 0) {
    tk_new_ioerror(L, S, ts_errcls(r) == TT_CLS_IO ? TT_CLS_BROKEN
                                                   : ts_errcls(r), r, "write");
    return lua_error(L);
  }
  if ((size_t)r == total) {
    lua_settop(L, 1);
    return tk_yield_results(L, 1);
  }
  /* skip what the kernel took, queue the rest */
  i = 0;
  while ((size_t)r >= bufs[i].len) {
    r -= (int)bufs[i].len;
    i++;
  }
  bufs[i].base += r;
  bufs[i].len -= (size_t)r;
  ts_op_init(&s->wop, &s->io, "write", cancel_write);
  s->wop.holds_clock = 1;            /* a virtual clock waits for writes */
  r = uv_write(&s->wreq, &s->h.stream, bufs + i, (unsigned)(nb - i), on_write);
  if (r < 0) {
    tk_new_ioerror(L, S, TT_CLS_BROKEN, r, "write");
    return lua_error(L);
  }
  if (n > TT_WBUFS) lua_pop(L, 1);            /* libuv copied the array */
  return tk_op_await(L, t, &s->wop, k_write);
}

/* s:close_write() -- half-close; waits until the kernel has it */
static int l_close_write(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_io *io = tk_io_check(L, S->io_mt[TT_MT_STREAM], "s:close_write");
  tt_stream *s = (tt_stream *)io;
  tt_task *t;
  tt_scope *c;
  int r;
  if (io == NULL || io->closed || s->wshut) return 0;  /* idempotent */
  if (s->is_std) {            /* ends tether's use only: no shutdown(2) */
    s->wshut = 1;
    return 0;
  }
  t = tk_current(L, S, "s:close_write");
  if (s->wop.task) {
    tk_new_ioerror(L, S, TT_CLS_BUSY, UV_EBUSY, "close_write");
    return lua_error(L);
  }
  if ((c = ts_cancelled(t)) != NULL) return tk_raise_cancelled(L, S, c);
  s->wshut = 1;
  ts_op_init(&s->wop, &s->io, "close_write", cancel_write);
  s->wop.holds_clock = 1;
  r = uv_shutdown(&s->sreq, &s->h.stream, on_shutdown);
  if (r == UV_ENOTCONN) return 0;             /* the peer is gone already */
  if (r < 0) {
    tk_new_ioerror(L, S, TT_CLS_BROKEN, r, "close_write");
    return lua_error(L);
  }
  lua_settop(L, 1);
  return tk_op_await(L, t, &s->wop, k_write);
}

static const tt_io_kind pair_kind = { "socketpair", ts_stream_close, NULL };

/* Push a stream whose pipe handle is initialised, without a descriptor. */
static tt_stream *tk_pipe_stream(lua_State *L, tt_sched *S) {
  tt_stream *s = tk_stream_new(L, S, &pair_kind);
  int r = uv_pipe_init(S->loop, &s->h.pipe, 0);
  if (r < 0) {
    tk_new_ioerror(L, S, TT_CLS_IO, r, "stream_pair");
    lua_error(L);
  }
  ts_stream_opened(s);
  return s;
}

/* tether.stream_pair() -> a, b: two connected streams (a socketpair) */
static int l_stream_pair(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  uv_os_sock_t fds[2];
  tt_stream *a, *b;
  int r, i;
  lua_settop(L, 0);
  a = tk_pipe_stream(L, S);
  b = tk_pipe_stream(L, S);
  r = uv_socketpair(SOCK_STREAM, 0, fds, UV_NONBLOCK_PIPE, UV_NONBLOCK_PIPE);
  if (r == 0) {
    tt_stream *ends[2] = { a, b };
    for (i = 0; i < 2; i++) {
      int e = uv_pipe_open(&ends[i]->h.pipe, fds[i]);
      if (e < 0) {
        close(fds[i]);
        if (r == 0) r = e;
      }
    }
  }
  if (r < 0) {
    ts_io_close(&a->io);
    ts_io_close(&b->io);
    tk_new_ioerror(L, S, TT_CLS_IO, r, "stream_pair");
    return lua_error(L);
  }
  return 2;
}

static const luaL_Reg stream_funcs[] = {
  {"stream_pair", l_stream_pair},
  {NULL, NULL}
};

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg stream_methods[] = {
  {"read", l_read},
  {"read_exactly", l_read_exactly},
  {"read_line", l_read_line},
  {"read_until", l_read_until},
  {"read_all", l_read_all},
  {"lines", l_lines},
  {"write", l_write},
  {"close_write", l_close_write},
  {NULL, NULL}
};

/* Register the stream metatable, and stream_pair into the module table. */
void tt_stream_open(lua_State *L, tt_sched *S) {
  S->io_mt[TT_MT_STREAM] = tk_io_newmeta(L, S, "tether.Stream",
                                         stream_methods);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, stream_funcs, 1);
}
