/* io_fs.c - tether.fs: files, directories and path operations, every call on libuv's thread pool */
#define _DEFAULT_SOURCE   /* d_type, preadv/pwritev (fs_sys.h) */
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "fs_sys.h"

/*
** Terms.  A request (tt_fsreq) is one call a task waits on: malloc'd by
** the binding, run on the pool by ts_fs_work (the blocking part is in
** fs_sys.h), completed on the loop by ts_fs_after, and turned into Lua
** values by the continuation k_fs.  Its memory starts with a tt_io of its
** own (`hold`, never listed in S->ios): the binding holds it once, and the
** task blocked on its op holds it too until its continuation has run (io.h),
** so the request is freed by whichever lets go last.
**
** A file or a directory (tt_fsobj) runs its requests one at a time, in the
** order they were called: `queue` holds those not yet started, `running`
** the one on the pool.  While it runs, the request owns the object's
** descriptor, position and read buffer; the loop thread touches them only
** when the object is idle (nothing running or queued), which is when the
** fast paths (a line already buffered, a seek) answer without the pool.
** Each pending request holds the object (ts_io_hold), so a closed object
** lives, and keeps its descriptor open, until its last request is over;
** then a close job closes the descriptor on the pool and frees the rest.
*/

#define TT_ECLOSED (-99999)     /* a request's result: its object was closed */
#define DIR_BATCH 256           /* entries read per directory request */

enum {                          /* request kinds */
  FS_OPEN, FS_READ, FS_WRITE, FS_SEEK, FS_SYNC, FS_FSTAT,       /* a file's */
  FS_OPENDIR, FS_READDIR,                                       /* a dir's */
  FS_STAT, FS_LSTAT, FS_MKDIR, FS_REMOVE, FS_RENAME, FS_COPY,   /* a path's */
  FS_MKDTEMP, FS_READ_FILE, FS_WRITE_FILE
};

static const char *const fs_opname[] = {
  "open", "read", "write", "seek", "sync", "stat",
  "dir", "dir",
  "stat", "lstat", "mkdir", "remove", "rename", "copy",
  "mkdtemp", "read_file", "write_file"
};

enum { RD_N, RD_ALL, RD_LINE, RD_LINE_NL };  /* read formats: n "a" "l" "L" */

typedef struct tt_fsobj tt_fsobj;
typedef struct tt_fsreq tt_fsreq;

struct tt_fsreq {
  tt_io hold;               /* first: its memory (see Terms) */
  uv_work_t work;
  tt_op op;
  tt_sched *S;
  tt_fsobj *obj;            /* the file or dir it is queued on, or NULL */
  tt_fsreq *qnext;
  int kind;                 /* FS_* */
  int err;                  /* the job's outcome: 0 or -errno */
  int objidx;               /* stack index of the object's userdata */
  const char *path, *path2; /* Lua strings on the waiting task's stack */
  char *fail;               /* malloc'd: the path a failure names, if not path */
  int flags, mode;          /* open flags / mkdir parents / remove recursive /
                               write_file append; permission bits */
  int fmt;                  /* FS_READ: RD_*; FS_SEEK: SEEK_* */
  size_t n;                 /* FS_READ: count for RD_N */
  int64_t off;              /* FS_SEEK: offset in, new position out */
  char *out;                /* FS_READ, READ_FILE, READDIR, MKDTEMP: malloc'd */
  size_t outlen;
  struct iovec *iov;        /* FS_WRITE, FS_WRITE_FILE: into Lua strings */
  int niov;
  struct stat st;           /* FS_*STAT */
  uint8_t eof;              /* FS_READ: EOF before any byte; READDIR: the end */
  uint8_t failed_to;        /* FS_COPY: the failure was on the destination */
  uint8_t local;            /* FS_SEEK set/cur: done on the loop thread */
};

struct tt_fsobj {
  tt_io io;
  tt_fsreq *qhead, *qtail;  /* not yet started, in call order */
  tt_fsreq *running;        /* on the pool */
  uv_work_t closereq;
  char *path;               /* malloc'd, for errors and dump */
  uint8_t isdir;
  uint8_t finishing;        /* the close job was started (or not needed) */
};

typedef struct tt_file {
  tt_fsobj o;
  int fd;                   /* -1 until opened */
  int64_t pos;              /* the position tether keeps */
  char *buf;                /* read-ahead: file bytes [bufoff, bufoff+buflen) */
  size_t bufcap, buflen;
  int64_t bufoff;
  uint8_t rd, wr, append;
  uint8_t stream;           /* a pipe, FIFO, tty or socket: no offsets */
} tt_file;

typedef struct tt_dir {
  tt_fsobj o;
  DIR *d;
  char *ents;               /* a batch of records (fss_read_dir) */
  size_t entlen, entpos;
  uint8_t eof;
} tt_dir;

static const tt_io_kind file_kind, dir_kind, fsreq_kind;

/* ---- static helpers: the file's read buffer (whoever owns the file) ---- */

/* Bytes buffered at the position. */
static size_t file_avail(const tt_file *f) {
  if (f->buflen == 0 || f->pos < f->bufoff ||
      f->pos >= f->bufoff + (int64_t)f->buflen)
    return 0;
  return (size_t)(f->bufoff + (int64_t)f->buflen - f->pos);
}

static const char *file_at(const tt_file *f) {
  return f->buf + (f->pos - f->bufoff);
}

/* The length of the line buffered at the position, with its "\n"; 0 when
** the buffer holds no whole line. */
static size_t file_line(const tt_file *f) {
  size_t avail = file_avail(f);
  const char *p, *nl;
  if (avail == 0) return 0;
  p = file_at(f);
  nl = memchr(p, '\n', avail);
  return nl ? (size_t)(nl - p) + 1 : 0;
}

/* One read into the buffer after what it holds (the buffer is first moved
** so that it starts at the position, and grown when full): bytes read, 0
** at EOF, or -errno.  Pool side. */
static int64_t file_fill(tt_file *f) {
  size_t avail = file_avail(f);
  ssize_t r;
  if (f->buf == NULL) {
    f->buf = malloc(FSS_CHUNK);
    if (f->buf == NULL) return -ENOMEM;
    f->bufcap = FSS_CHUNK;
  }
  if (avail == 0) {
    f->bufoff = f->pos;
    f->buflen = 0;
  } else if (f->bufoff != f->pos) {
    memmove(f->buf, file_at(f), avail);
    f->bufoff = f->pos;
    f->buflen = avail;
  }
  if (f->buflen == f->bufcap) {
    char *nb = f->bufcap > SIZE_MAX / 4 ? NULL : realloc(f->buf, f->bufcap * 2);
    if (nb == NULL) return -ENOMEM;
    f->buf = nb;
    f->bufcap *= 2;
  }
  do {
    r = f->stream ? read(f->fd, f->buf + f->buflen, f->bufcap - f->buflen)
                  : pread(f->fd, f->buf + f->buflen, f->bufcap - f->buflen,
                          (off_t)(f->bufoff + (int64_t)f->buflen));
  } while (r < 0 && errno == EINTR);
  if (r < 0) return fss_err();
  f->buflen += (size_t)r;
  return r;
}

/* Take `len` buffered bytes (a copy, malloc'd) and move past `adv`. */
static int file_take(tt_file *f, size_t len, size_t adv, tt_fsreq *r) {
  r->out = malloc(len + 1);
  if (r->out == NULL) return -ENOMEM;
  memcpy(r->out, file_at(f), len);
  r->outlen = len;
  f->pos += (int64_t)adv;
  return 0;
}

/* ---- pool side: the jobs ------------------------------------------------ */

static int job_open(tt_file *f, tt_fsreq *r) {
  struct stat st;
  int fd = fss_open(r->path, r->flags, r->mode);
  if (fd < 0) return fd;
  if (fstat(fd, &st) != 0) {
    int rc = fss_err();
    fss_close(fd);
    return rc;
  }
  f->fd = fd;
  f->stream = !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) ||
                S_ISDIR(st.st_mode));
  /* NOTE: like C's fopen, "a" starts at the end and "a+" at the start */
  if (f->append && !f->rd && !f->stream) f->pos = (int64_t)st.st_size;
  return 0;
}

static int job_read(tt_file *f, tt_fsreq *r) {
  int64_t got;
  if (r->fmt == RD_ALL) {
    struct stat st;
    size_t hint = 0;
    int rc;
    if (!f->stream && fstat(f->fd, &st) == 0 && st.st_size > f->pos)
      hint = (size_t)(st.st_size - f->pos);
    rc = fss_read_rest(f->fd, f->stream ? -1 : f->pos, hint, &r->out,
                       &r->outlen);
    if (rc == 0) {
      f->pos += (int64_t)r->outlen;
      if (!f->stream) f->buflen = 0;
    }
    return rc;
  }
  if (r->fmt == RD_LINE || r->fmt == RD_LINE_NL) {
    for (;;) {
      size_t line = file_line(f);
      if (line)
        return file_take(f, r->fmt == RD_LINE ? line - 1 : line, line, r);
      got = file_fill(f);
      if (got < 0) return (int)got;
      if (got == 0) {                   /* EOF: the last line has no "\n" */
        size_t avail = file_avail(f);
        if (avail == 0) { r->eof = 1; return 0; }
        return file_take(f, avail, avail, r);
      }
    }
  }
  /* RD_N */
  if (r->n < FSS_CHUNK || file_avail(f) >= r->n) {
    while (file_avail(f) < (r->n ? r->n : 1)) {
      got = file_fill(f);
      if (got < 0) return (int)got;
      if (got == 0) break;
    }
    if (file_avail(f) == 0) { r->eof = 1; return 0; }
    {
      size_t k = file_avail(f) < r->n ? file_avail(f) : r->n;
      return file_take(f, k, k, r);
    }
  }
  {                                    /* large: straight into the result */
    size_t have = file_avail(f), cap = r->n < (1u << 20) ? r->n : (1u << 20);
    if (have > cap) cap = have;
    r->out = malloc(cap + 1);
    if (r->out == NULL) return -ENOMEM;
    memcpy(r->out, f->buf ? file_at(f) : "", have);
    f->pos += (int64_t)have;
    r->outlen = have;
    while (r->outlen < r->n) {
      if (r->outlen == cap) {
        size_t ncap = cap * 2 < r->n ? cap * 2 : r->n;
        char *nb = realloc(r->out, ncap + 1);
        if (nb == NULL) return -ENOMEM;
        r->out = nb;
        cap = ncap;
      }
      got = fss_read_full(f->fd, r->out + r->outlen, cap - r->outlen,
                          f->stream ? -1 : f->pos);
      if (got < 0) return (int)got;
      r->outlen += (size_t)got;
      f->pos += got;
      if (r->outlen < cap) break;       /* EOF */
    }
    if (r->outlen == 0) r->eof = 1;
    return 0;
  }
}

static int job_write(tt_file *f, tt_fsreq *r) {
  int64_t w;
  if (!f->stream) f->buflen = 0;        /* the buffer may hold what changes */
  w = fss_write_all(f->fd, r->iov, r->niov,
                    (f->append || f->stream) ? -1 : f->pos);
  if (w < 0) return (int)w;
  if (f->append && !f->stream) {
    off_t end = lseek(f->fd, 0, SEEK_CUR);
    if (end < 0) return fss_err();
    f->pos = (int64_t)end;
  } else {
    f->pos += w;
  }
  return 0;
}

/* The new position of a seek, or -errno.  Either side (the file is
** idle or owned by the request). */
static int64_t seek_target(tt_file *f, int whence, int64_t off, int64_t size) {
  int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? f->pos : size;
  if (f->stream) return -ESPIPE;
  if ((off > 0 && base > INT64_MAX - off) || base + off < 0) return -EINVAL;
  return base + off;
}

static int job_file(tt_file *f, tt_fsreq *r) {
  switch (r->kind) {
    case FS_OPEN: return job_open(f, r);
    case FS_READ: return job_read(f, r);
    case FS_WRITE: return job_write(f, r);
    case FS_SYNC: return fsync(f->fd) == 0 ? 0 : fss_err();
    case FS_FSTAT: return fstat(f->fd, &r->st) == 0 ? 0 : fss_err();
    case FS_SEEK: {
      int64_t p;
      if (fstat(f->fd, &r->st) != 0) return fss_err();
      p = seek_target(f, r->fmt, r->off, (int64_t)r->st.st_size);
      if (p < 0) return (int)p;
      f->pos = r->off = p;
      return 0;
    }
    default: return -EINVAL;
  }
}

static int job_dir(tt_dir *d, tt_fsreq *r) {
  int eof;
  if (r->kind == FS_OPENDIR) {
    int fd = fss_open(r->path, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0) return fd;
    d->d = fdopendir(fd);
    if (d->d == NULL) {
      int rc = fss_err();
      fss_close(fd);
      return rc;
    }
  }
  if (fss_read_dir(d->d, DIR_BATCH, &r->out, &r->outlen, &eof) != 0)
    return fss_err();
  r->eof = (uint8_t)eof;
  return 0;
}

static int job_mkdtemp(tt_fsreq *r) {
  size_t n = strlen(r->path);
  r->out = malloc(n + 7);
  if (r->out == NULL) return -ENOMEM;
  memcpy(r->out, r->path, n);
  memcpy(r->out + n, "XXXXXX", 7);
  if (mkdtemp(r->out) == NULL) return fss_err();
  r->outlen = n + 6;
  return 0;
}

/* The blocking part of every request, on a pool thread. */
static void ts_fs_work(uv_work_t *w) {
  tt_fsreq *r = w->data;
  int rc;
  switch (r->kind) {
    case FS_OPEN: case FS_READ: case FS_WRITE: case FS_SEEK: case FS_SYNC:
    case FS_FSTAT:
      rc = job_file((tt_file *)r->obj, r);
      break;
    case FS_OPENDIR: case FS_READDIR:
      rc = job_dir((tt_dir *)r->obj, r);
      break;
    case FS_STAT: rc = stat(r->path, &r->st) == 0 ? 0 : fss_err(); break;
    case FS_LSTAT: rc = lstat(r->path, &r->st) == 0 ? 0 : fss_err(); break;
    case FS_MKDIR:
      rc = r->flags ? fss_mkdir_parents(r->path, r->mode)
                    : (mkdir(r->path, (mode_t)r->mode) == 0 ? 0 : fss_err());
      break;
    case FS_REMOVE: rc = fss_remove(r->path, r->flags, &r->fail); break;
    case FS_RENAME:
      rc = rename(r->path, r->path2) == 0 ? 0 : fss_err();
      break;
    case FS_COPY: {
      int which;
      rc = fss_copy(r->path, r->path2, &which);
      r->failed_to = (uint8_t)which;
      break;
    }
    case FS_MKDTEMP: rc = job_mkdtemp(r); break;
    case FS_READ_FILE: rc = fss_read_file(r->path, &r->out, &r->outlen); break;
    case FS_WRITE_FILE:
      rc = fss_write_file(r->path, r->iov->iov_base, r->iov->iov_len,
                          r->flags, r->mode);
      break;
    default: rc = -EINVAL;
  }
  r->err = rc;
}

/* The close job: the descriptor or the directory stream. */
static void ts_fs_close_work(uv_work_t *w) {
  tt_fsobj *o = w->data;
  if (o->isdir) {
    tt_dir *d = (tt_dir *)o;
    if (d->d) closedir(d->d);
  } else {
    fss_close(((tt_file *)o)->fd);
  }
}

/* ---- loop side: queues, completion, cancellation ------------------------ */

static void ts_fsobj_free_parts(tt_fsobj *o) {
  free(o->path);
  o->path = NULL;
  if (o->isdir) {
    tt_dir *d = (tt_dir *)o;
    free(d->ents);
    d->ents = NULL;
  } else {
    tt_file *f = (tt_file *)o;
    free(f->buf);
    f->buf = NULL;
  }
}

static void ts_fs_close_after(uv_work_t *w, int status) {
  tt_fsobj *o = w->data;
  (void)status;
  ts_fsobj_free_parts(o);
  ts_io_release(&o->io);
}

/* A closed object with nothing pending: close its descriptor (on the pool)
** and free what it owns. */
static void ts_fsobj_finish(tt_fsobj *o) {
  int open = o->isdir ? ((tt_dir *)o)->d != NULL : ((tt_file *)o)->fd >= 0;
  if (o->finishing) return;
  o->finishing = 1;
  if (open) {
    o->closereq.data = o;
    ts_io_hold(&o->io);
    if (uv_queue_work(o->io.S->loop, &o->closereq, ts_fs_close_work,
                      ts_fs_close_after) == 0)
      return;
    ts_fs_close_work(&o->closereq);     /* cannot happen; never leak it */
    ts_io_release(&o->io);
  }
  ts_fsobj_free_parts(o);
}

static void ts_fs_after(uv_work_t *w, int status);

/* Complete request `r` of object `o` (or of no object) with `result`:
** wake its task, drop its hold. */
static void ts_fsreq_complete(tt_fsreq *r, intptr_t result) {
  tt_fsobj *o = r->obj;
  ts_op_done(&r->op, result);
  if (o) ts_io_release(&o->io);
  else r->S->nhandles--;
}

/* The result a finished job gives its task. */
static intptr_t ts_fsreq_result(tt_fsreq *r, int status) {
  if (r->obj && r->obj->io.closed) return TT_ECLOSED;
  if (status == UV_ECANCELED) return UV_ECANCELED;
  return r->err ? uv_translate_sys_error(-r->err) : 0;
}

/* Start the next requests of `o`: those done on the loop thread at once,
** then the first one that needs the pool.  When `o` is closed and idle,
** finish it. */
static void ts_fsobj_next(tt_fsobj *o) {
  while (o->running == NULL && o->qhead) {
    tt_fsreq *r = o->qhead;
    o->qhead = r->qnext;
    if (o->qhead == NULL) o->qtail = NULL;
    r->qnext = NULL;
    if (r->local) {                     /* a seek from the start or here */
      int64_t p = seek_target((tt_file *)o, r->fmt, r->off, 0);
      if (p >= 0) ((tt_file *)o)->pos = r->off = p;
      ts_fsreq_complete(r, p < 0 ? uv_translate_sys_error((int)-p) : 0);
      continue;
    }
    if (r->kind == FS_READDIR) {
      tt_dir *d = (tt_dir *)o;
      if (d->entpos < d->entlen || d->eof) {
        ts_fsreq_complete(r, 0);
        continue;
      }
    }
    o->running = r;
    if (uv_queue_work(o->io.S->loop, &r->work, ts_fs_work, ts_fs_after) != 0) {
      o->running = NULL;
      ts_fsreq_complete(r, UV_EINVAL);
    }
  }
  if (o->io.closed && o->running == NULL && o->qhead == NULL)
    ts_fsobj_finish(o);
}

/* libuv is done with a request (it ran, or uv_cancel took it back). */
static void ts_fs_after(uv_work_t *w, int status) {
  tt_fsreq *r = w->data;
  tt_fsobj *o = r->obj;
  intptr_t result = ts_fsreq_result(r, status);
  if (o) {
    if (o->isdir && result == 0) {
      tt_dir *d = (tt_dir *)o;
      free(d->ents);
      d->ents = r->out;
      d->entlen = r->outlen;
      d->entpos = 0;
      d->eof = r->eof;
      r->out = NULL;
    }
    o->running = NULL;
    ts_fsobj_next(o);                   /* before the release: o stays */
  }
  ts_fsreq_complete(r, result);
}

/* The task waiting on `op` was cancelled: a request not started yet is
** taken back; one that runs is left to finish (its result stands). */
static void ts_fs_cancel(tt_op *op) {
  tt_fsreq *r = (tt_fsreq *)((char *)op - offsetof(tt_fsreq, op));
  tt_fsobj *o = r->obj;
  if (o && o->running != r) {           /* still in the object's queue */
    tt_fsreq **p = &o->qhead, *prev = NULL;
    while (*p && *p != r) { prev = *p; p = &(*p)->qnext; }
    if (*p == NULL) return;
    *p = r->qnext;
    if (o->qtail == r) o->qtail = prev;
    ts_fsreq_complete(r, UV_ECANCELED);
    return;
  }
  uv_cancel((uv_req_t *)&r->work);      /* fails once it runs: then wait */
}

/* kind->close of files and dirs: queued requests end with
** ClosedResourceError; a running one finishes first (its descriptor stays
** open under it), then the descriptor is closed. */
static void ts_fsobj_close(tt_io *io) {
  tt_fsobj *o = (tt_fsobj *)io;
  while (o->qhead) {
    tt_fsreq *r = o->qhead;
    o->qhead = r->qnext;
    r->qnext = NULL;
    ts_fsreq_complete(r, TT_ECLOSED);
  }
  o->qtail = NULL;
  if (o->running) uv_cancel((uv_req_t *)&o->running->work);
  else ts_fsobj_finish(o);
}

/* The binding's part is over: free what the request owns, and the request
** itself once its task let go of it too. */
static void ts_fsreq_free(tt_fsreq *r) {
  free(r->out);
  free(r->fail);
  free(r->iov);
  r->out = r->fail = NULL;
  r->iov = NULL;
  ts_io_unhold(&r->hold);
}

/* ---- task side ---------------------------------------------------------- */

static int k_fs(lua_State *L, int status, lua_KContext ctx);

/* A new request of `kind` for the running task.  Everything that can raise
** must be done before: from here on nothing may (but tk_fsreq_iov). */
static tt_fsreq *tk_fsreq_new(lua_State *L, tt_sched *S, int kind) {
  tt_fsreq *r = calloc(1, sizeof *r);
  if (r == NULL) luaL_error(L, "not enough memory");
  r->hold.S = S;
  r->hold.kind = &fsreq_kind;
  r->hold.nhold = 1;                    /* the binding's, till k_fs is done */
  r->S = S;
  r->kind = kind;
  r->work.data = r;
  ts_op_init(&r->op, &r->hold, fs_opname[kind], ts_fs_cancel);
  r->op.holds_clock = 1;
  return r;
}

/* Queue `r` on object `o` (or submit a path request) and wait for it. */
static int tk_fsreq_wait(lua_State *L, tt_task *t, tt_fsreq *r, tt_fsobj *o) {
  r->obj = o;
  if (o) {
    ts_io_hold(&o->io);
    if (o->qtail) o->qtail->qnext = r;
    else o->qhead = r;
    o->qtail = r;
    ts_fsobj_next(o);
  } else {
    r->S->nhandles++;
    if (uv_queue_work(r->S->loop, &r->work, ts_fs_work, ts_fs_after) != 0)
      ts_fsreq_complete(r, UV_EINVAL);
  }
  return tk_op_await(L, t, &r->op, k_fs);
}

/* The running task for fs operation `what`; raises Cancelled when it is
** cancelled (every fs call is a checkpoint). */
static tt_task *tk_fs_task(lua_State *L, tt_sched *S, const char *what) {
  tt_task *t = tk_current(L, S, what);
  tt_scope *s = ts_cancelled(t);
  if (s) tk_raise_cancelled(L, S, s);
  return t;
}

static tt_fsobj *tk_obj_at(lua_State *L, int idx) {
  tt_io **ud = lua_touserdata(L, idx);
  return ud ? (tt_fsobj *)*ud : NULL;
}

static const char *type_name(int mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "link";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "char";
    case S_IFBLK: return "block";
    default: return "unknown";
  }
}

static void push_stat(lua_State *L, const struct stat *st) {
  lua_createtable(L, 0, 11);
  lua_pushstring(L, type_name((int)st->st_mode));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st->st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)(st->st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushnumber(L, (double)st->st_mtim.tv_sec + st->st_mtim.tv_nsec / 1e9);
  lua_setfield(L, -2, "mtime");
  lua_pushnumber(L, (double)st->st_atim.tv_sec + st->st_atim.tv_nsec / 1e9);
  lua_setfield(L, -2, "atime");
  lua_pushnumber(L, (double)st->st_ctim.tv_sec + st->st_ctim.tv_nsec / 1e9);
  lua_setfield(L, -2, "ctime");
  lua_pushinteger(L, (lua_Integer)st->st_nlink);
  lua_setfield(L, -2, "nlink");
  lua_pushinteger(L, (lua_Integer)st->st_uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, (lua_Integer)st->st_gid);
  lua_setfield(L, -2, "gid");
  lua_pushinteger(L, (lua_Integer)st->st_ino);
  lua_setfield(L, -2, "ino");
  lua_pushinteger(L, (lua_Integer)st->st_dev);
  lua_setfield(L, -2, "dev");
}

/* Push the next buffered entry of `d` (name, kind); 0 when there is none. */
static int push_dir_entry(lua_State *L, tt_dir *d) {
  const char *rec;
  size_t nl;
  if (d->entpos >= d->entlen) return 0;
  rec = d->ents + d->entpos;
  nl = strlen(rec + 1);
  lua_pushlstring(L, rec + 1, nl);
  lua_pushstring(L, type_name((int)((unsigned char)rec[0]) << 12));
  d->entpos += nl + 2;
  return 2;
}

static int l_dir_next(lua_State *L);

/* Protected: push the results of the finished request (light userdata 1;
** 2: the object's userdata or nil). */
static int l_fs_results(lua_State *L) {
  tt_fsreq *r = lua_touserdata(L, 1);
  switch (r->kind) {
    case FS_READ:
      if (r->eof) lua_pushnil(L);
      else lua_pushlstring(L, r->out, r->outlen);
      return 1;
    case FS_READ_FILE: case FS_MKDTEMP:
      lua_pushlstring(L, r->out, r->outlen);
      return 1;
    case FS_WRITE:
      lua_pushvalue(L, 2);
      return 1;
    case FS_SEEK:
      lua_pushinteger(L, (lua_Integer)r->off);
      return 1;
    case FS_FSTAT: case FS_STAT: case FS_LSTAT:
      push_stat(L, &r->st);
      return 1;
    case FS_OPENDIR:
      lua_pushlightuserdata(L, r->S);
      lua_pushcclosure(L, l_dir_next, 1);
      lua_pushvalue(L, 2);
      lua_pushnil(L);
      lua_pushvalue(L, 2);
      return 4;
    case FS_OPEN:
      lua_pushvalue(L, 2);
      return 1;
    case FS_READDIR: {                  /* k_fs checked that it is open */
      tt_dir *d = (tt_dir *)tk_obj_at(L, 2);
      int n = push_dir_entry(L, d);
      if (n > 0) return n;
      ts_io_close(&d->o.io);            /* the end: close it now */
      lua_pushnil(L);
      return 1;
    }
    default:
      return 0;
  }
}

/* Protected: push the IOError of the failed request (light userdata 1; 2:
** the object's userdata or nil). */
static int l_fs_error(lua_State *L) {
  tt_fsreq *r = lua_touserdata(L, 1);
  tt_fsobj *o = tk_obj_at(L, 2);
  const char *path = r->fail ? r->fail
                     : r->kind == FS_COPY && r->failed_to ? r->path2
                     : r->path ? r->path : o ? o->path : NULL;
  tk_new_ioerror(L, r->S, TT_CLS_IO, (int)r->op.result, fs_opname[r->kind]);
  if (path) {
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
  }
  if (r->path2) {
    lua_pushstring(L, r->path2);
    lua_setfield(L, -2, "to");
  }
  return 1;
}

/*
** The continuation of every fs call (`ctx`: the request's op): turn the
** finished request into results or an error, free it, return or raise.
*/
static int k_fs(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_fsreq *r = (tt_fsreq *)((char *)ctx - offsetof(tt_fsreq, op));
  intptr_t result = r->op.result;
  int base, nres;
  (void)status;
  if (r->kind == FS_OPEN || r->kind == FS_OPENDIR) {
    tt_fsobj *o = tk_obj_at(L, r->objidx);
    if (result != 0 && o) ts_io_close(&o->io);  /* nothing was opened */
  }
  if (r->op.cancelling && result == UV_ECANCELED) {
    tt_scope *s = S->current ? ts_cancelled(S->current) : NULL;
    if (s) {
      ts_fsreq_free(r);
      return tk_raise_cancelled(L, S, s);
    }
  }
  if (result == TT_ECLOSED) {
    const char *op = fs_opname[r->kind];
    ts_fsreq_free(r);
    return tk_raise_closed(L, S, op);
  }
  if (result == 0 && r->kind == FS_READDIR) {
    tt_dir *d = (tt_dir *)tk_obj_at(L, r->objidx);
    if (d == NULL || d->o.io.closed) {  /* closed since the batch came */
      ts_fsreq_free(r);
      return tk_raise_closed(L, S, "dir");
    }
    if (d->entpos >= d->entlen && !d->eof) {
      /* another task took the batch (it iterates the same dir): read on */
      tt_scope *s = ts_cancelled(S->current);
      if (s) {
        ts_fsreq_free(r);
        return tk_raise_cancelled(L, S, s);
      }
      r->err = 0;
      return tk_fsreq_wait(L, S->current, r, &d->o);
    }
  }
  base = lua_gettop(L);
  lua_pushcfunction(L, result != 0 ? l_fs_error : l_fs_results);
  lua_pushlightuserdata(L, r);
  if (r->objidx) lua_pushvalue(L, r->objidx);
  else lua_pushnil(L);
  status = lua_pcall(L, 2, LUA_MULTRET, 0);
  ts_fsreq_free(r);
  if (status != LUA_OK || result != 0) return lua_error(L);
  nres = lua_gettop(L) - base;
  return nres;
}

/* ---- arguments ---------------------------------------------------------- */

static const char *check_path(lua_State *L, int arg, const char *fname) {
  return tk_check_cstr(L, arg, fname, "path", NULL);
}

/* Raise when an argument follows the last one the function takes (`n`; a
** method counts from after self, as its messages do). */
static void check_nargs(lua_State *L, int n, const char *fname, int method) {
  if (!lua_isnone(L, n + 1))
    tk_argerror(L, n + 1 - method, fname, lua_pushfstring(L, "no argument "
                "expected after the last one, got %s", luaL_typename(L, n + 1)));
}

/* opts.perm: a number or an octal string ("0644"); `def` when absent. */
static int opt_perm(lua_State *L, int oidx, const char *fname, int def) {
  int ty = tk_opt_field(L, oidx, "perm");
  lua_Integer v = def;
  if (ty == LUA_TNUMBER) {
    int isint;
    v = lua_tointegerx(L, -1, &isint);
    if (!isint) v = -1;
  } else if (ty == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    char *end;
    long p = strtol(s, &end, 8);
    v = (*s == '\0' || *end != '\0' || *s == '-' || *s == '+') ? -1 : p;
  } else if (ty != LUA_TNIL) {
    v = -1;
  }
  if (v < 0 || v > 07777)
    tk_argerror(L, oidx, fname, "option 'perm': permission bits expected "
                "(a number or an octal string such as \"0644\")");
  lua_pop(L, 1);
  return (int)v;
}

/* ---- bindings: tether.fs ------------------------------------------------- */

static const char *const open_opts[] = {"perm", NULL};

/* tether.fs.open(path [, mode [, opts]]) -> file */
static int l_fs_open(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  const char *path = check_path(L, 1, "tether.fs.open");
  const char *mode = luaL_optstring(L, 2, "r"), *m = mode;
  int oidx = tk_check_opts(L, 3, "tether.fs.open", open_opts) ? 3 : 0;
  int perm = opt_perm(L, oidx, "tether.fs.open", 0666), flags, plus;
  size_t plen = strlen(path);
  tt_task *t;
  tt_file *f;
  tt_fsreq *r;
  char c = *m ? *m++ : '\0';
  plus = *m == '+';
  if (plus) m++;
  if (strchr("rwax", c) == NULL || c == '\0' || strspn(m, "b") != strlen(m))
    return tk_argerror(L, 2, "tether.fs.open", "invalid mode (expected \"r\", \"w\", "
                       "\"a\", \"x\", optionally followed by \"+\" and \"b\")");
  check_nargs(L, 3, "tether.fs.open", 0);
  t = tk_fs_task(L, S, "tether.fs.open");
  flags = plus ? O_RDWR : (c == 'r' ? O_RDONLY : O_WRONLY);
  if (c == 'w') flags |= O_CREAT | O_TRUNC;
  if (c == 'a') flags |= O_CREAT | O_APPEND;
  if (c == 'x') flags |= O_CREAT | O_EXCL;
  lua_settop(L, 3);
  f = tk_io_new(L, S, sizeof(tt_file), &file_kind, S->io_mt[TT_MT_FILE]);
  f->fd = -1;
  f->rd = (uint8_t)(c == 'r' || plus);
  f->wr = (uint8_t)(c != 'r' || plus);
  f->append = (uint8_t)(c == 'a');
  f->o.path = malloc(plen + 1);
  if (f->o.path == NULL) return luaL_error(L, "not enough memory");
  memcpy(f->o.path, path, plen + 1);
  r = tk_fsreq_new(L, S, FS_OPEN);
  r->path = path;
  r->flags = flags;
  r->mode = perm;
  r->objidx = 4;
  return tk_fsreq_wait(L, t, r, &f->o);
}

/* A request on a path (path at 1, path2 at 2 when given; `nargs`: how
** many arguments the function takes). */
static int tk_path_op(lua_State *L, int kind, const char *fname, int nargs,
                      int two, int flags, int mode) {
  tt_sched *S = TT_UPSCHED(L);
  const char *p1 = check_path(L, 1, fname);
  const char *p2 = two ? tk_check_cstr(L, 2, fname, "path", NULL) : NULL;
  tt_task *t;
  tt_fsreq *r;
  check_nargs(L, nargs, fname, 0);
  t = tk_fs_task(L, S, fname);
  r = tk_fsreq_new(L, S, kind);
  r->path = p1;
  r->path2 = p2;
  r->flags = flags;
  r->mode = mode;
  return tk_fsreq_wait(L, t, r, NULL);
}

/* tether.fs.stat(path) -> { type, size, mtime, mode, ... }; follows links */
static int l_fs_stat(lua_State *L) {
  return tk_path_op(L, FS_STAT, "tether.fs.stat", 1, 0, 0, 0);
}

/* tether.fs.lstat(path) -> the same, of a link itself */
static int l_fs_lstat(lua_State *L) {
  return tk_path_op(L, FS_LSTAT, "tether.fs.lstat", 1, 0, 0, 0);
}

static const char *const mkdir_opts[] = {"parents", "perm", NULL};

/* tether.fs.mkdir(path [, { parents = true, perm = "0755" }]) */
static int l_fs_mkdir(lua_State *L) {
  int oidx = tk_check_opts(L, 2, "tether.fs.mkdir", mkdir_opts) ? 2 : 0;
  int parents = tk_opt_bool(L, oidx, "parents", 0, "tether.fs.mkdir");
  int perm = opt_perm(L, oidx, "tether.fs.mkdir", 0777);
  return tk_path_op(L, FS_MKDIR, "tether.fs.mkdir", 2, 0, parents, perm);
}

static const char *const remove_opts[] = {"recursive", NULL};

/* tether.fs.remove(path [, { recursive = true }]) -- never follows links */
static int l_fs_remove(lua_State *L) {
  int oidx = tk_check_opts(L, 2, "tether.fs.remove", remove_opts) ? 2 : 0;
  int rec = tk_opt_bool(L, oidx, "recursive", 0, "tether.fs.remove");
  return tk_path_op(L, FS_REMOVE, "tether.fs.remove", 2, 0, rec, 0);
}

/* tether.fs.rename(from, to) */
static int l_fs_rename(lua_State *L) {
  return tk_path_op(L, FS_RENAME, "tether.fs.rename", 2, 1, 0, 0);
}

/* tether.fs.copy(from, to) -- the contents, and the permission bits */
static int l_fs_copy(lua_State *L) {
  return tk_path_op(L, FS_COPY, "tether.fs.copy", 2, 1, 0, 0);
}

/* tether.fs.mkdtemp(prefix) -> path of a new directory (prefix .. 6 chars) */
static int l_fs_mkdtemp(lua_State *L) {
  return tk_path_op(L, FS_MKDTEMP, "tether.fs.mkdtemp", 1, 0, 0, 0);
}

/* tether.fs.read_file(path) -> string */
static int l_fs_read_file(lua_State *L) {
  return tk_path_op(L, FS_READ_FILE, "tether.fs.read_file", 1, 0, 0, 0);
}

static const char *const write_file_opts[] = {"append", "perm", NULL};


/* r->iov for `n` vectors; on failure frees `r` and raises. */
static void tk_fsreq_iov(lua_State *L, tt_fsreq *r, int n) {
  r->iov = malloc(sizeof *r->iov * (size_t)(n > 0 ? n : 1));
  if (r->iov == NULL) {
    ts_fsreq_free(r);
    luaL_error(L, "not enough memory");
  }
  r->niov = n;
}

/* tether.fs.write_file(path, data [, { append = true, perm = "0644" }]) */
static int l_fs_write_file(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  const char *path = check_path(L, 1, "tether.fs.write_file");
  size_t len;
  const char *data;
  int oidx, append, perm;
  tt_task *t;
  tt_fsreq *r;
  if (lua_type(L, 2) != LUA_TSTRING && lua_type(L, 2) != LUA_TNUMBER)
    return tk_argerror(L, 2, "tether.fs.write_file", lua_pushfstring(L, "string "
                       "expected, got %s", luaL_typename(L, 2)));
  data = lua_tolstring(L, 2, &len);
  oidx = tk_check_opts(L, 3, "tether.fs.write_file", write_file_opts) ? 3 : 0;
  append = tk_opt_bool(L, oidx, "append", 0, "tether.fs.write_file");
  perm = opt_perm(L, oidx, "tether.fs.write_file", 0666);
  check_nargs(L, 3, "tether.fs.write_file", 0);
  lua_settop(L, 3);
  t = tk_fs_task(L, S, "tether.fs.write_file");
  r = tk_fsreq_new(L, S, FS_WRITE_FILE);
  tk_fsreq_iov(L, r, 1);
  r->iov->iov_base = (void *)data;
  r->iov->iov_len = len;
  r->path = path;
  r->flags = append;
  r->mode = perm;
  return tk_fsreq_wait(L, t, r, NULL);
}

/* tether.fs.dir(path) -> iterator, dir, nil, dir  (the 4th value closes) */
static int l_fs_dir(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  const char *path = check_path(L, 1, "tether.fs.dir");
  size_t plen = strlen(path);
  tt_task *t;
  tt_dir *d;
  tt_fsreq *r;
  check_nargs(L, 1, "tether.fs.dir", 0);
  t = tk_fs_task(L, S, "tether.fs.dir");
  d = tk_io_new(L, S, sizeof(tt_dir), &dir_kind, S->io_mt[TT_MT_DIR]);
  d->o.isdir = 1;
  d->o.path = malloc(plen + 1);
  if (d->o.path == NULL) return luaL_error(L, "not enough memory");
  memcpy(d->o.path, path, plen + 1);
  r = tk_fsreq_new(L, S, FS_OPENDIR);
  r->path = path;
  r->objidx = 2;
  return tk_fsreq_wait(L, t, r, &d->o);
}

/* The iterator of tether.fs.dir: (dir) -> name, kind, or nil at the end
** (which closes the directory). */
static int l_dir_next(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_dir *d = (tt_dir *)tk_io_checkopen(L, S->io_mt[TT_MT_DIR],
                                        "dir iterator", "dir");
  tt_task *t;
  tt_fsreq *r;
  lua_settop(L, 1);
  t = tk_fs_task(L, S, "tether.fs.dir iterator");
  if (d->o.running == NULL && d->o.qhead == NULL) {
    int n = push_dir_entry(L, d);
    if (n) return tk_yield_results(L, n);
    if (d->eof) {
      ts_io_close(&d->o.io);
      lua_pushnil(L);
      return tk_yield_results(L, 1);
    }
  }
  r = tk_fsreq_new(L, S, FS_READDIR);
  r->objidx = 1;
  return tk_fsreq_wait(L, t, r, &d->o);
}

/* ---- bindings: file methods --------------------------------------------- */

static tt_file *check_file(lua_State *L, const char *what, const char *op) {
  tt_sched *S = TT_UPSCHED(L);
  return (tt_file *)tk_io_checkopen(L, S->io_mt[TT_MT_FILE], what, op);
}

/* Raise the IOError `err` (libuv's) of operation `op` on file `f`. */
static int tk_file_raise(lua_State *L, tt_file *f, int err, const char *op) {
  tk_new_ioerror(L, f->o.io.S, TT_CLS_IO, err, op);
  lua_pushstring(L, f->o.path);
  lua_setfield(L, -2, "path");
  return lua_error(L);
}

/* A read format at `idx` of a method (none: "l"): RD_*, and the count in *n. */
static int check_fmt(lua_State *L, int idx, const char *fname, size_t *n) {
  const char *s;
  *n = 0;
  if (lua_isnoneornil(L, idx)) return RD_LINE;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    int isint;
    lua_Integer v = lua_tointegerx(L, idx, &isint);
    if (!isint || v < 0)
      return tk_argerror(L, idx - 1, fname, "non-negative integer expected");
    *n = (size_t)v;
    return RD_N;
  }
  s = lua_tostring(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING && *s == '*') s++;
  if (lua_type(L, idx) == LUA_TSTRING && s[0] && !s[1]) {
    if (*s == 'a') return RD_ALL;
    if (*s == 'l') return RD_LINE;
    if (*s == 'L') return RD_LINE_NL;
  }
  return tk_argerror(L, idx - 1, fname, "invalid format (expected a count, "
                     "\"a\", \"l\" or \"L\")");
}

/* f:read with the file at 1 and the format at 2. */
static int tk_file_read(lua_State *L, const char *what) {
  tt_sched *S = TT_UPSCHED(L);
  tt_file *f = check_file(L, what, "read");
  size_t n;
  int fmt = check_fmt(L, 2, "f:read", &n);
  tt_task *t;
  tt_fsreq *r;
  if (!f->rd) return luaL_error(L, "%s: the file is not open for reading", what);
  lua_settop(L, 2);
  t = tk_fs_task(L, S, what);
  if (f->o.running == NULL && f->o.qhead == NULL) {   /* buffered? */
    size_t avail = file_avail(f), line;
    if (fmt == RD_N && avail > 0 && avail >= n) {
      lua_pushlstring(L, file_at(f), n);
      f->pos += (int64_t)n;
      return tk_yield_results(L, 1);
    }
    if ((fmt == RD_LINE || fmt == RD_LINE_NL) && (line = file_line(f)) > 0) {
      lua_pushlstring(L, file_at(f), fmt == RD_LINE ? line - 1 : line);
      f->pos += (int64_t)line;
      return tk_yield_results(L, 1);
    }
  }
  r = tk_fsreq_new(L, S, FS_READ);
  r->fmt = fmt;
  r->n = n;
  r->objidx = 1;
  return tk_fsreq_wait(L, t, r, &f->o);
}

/* f:read([fmt]) -> string, or nil at EOF (fmt "a": "" at EOF) */
static int l_file_read(lua_State *L) {
  if (lua_gettop(L) > 2)
    return tk_argerror(L, 2, "f:read", "one format per call");
  return tk_file_read(L, "f:read");
}

static int l_lines_iter(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, lua_upvalueindex(3));
  return tk_file_read(L, "f:lines iterator");
}

/* f:lines([fmt]) -> iterator over f:read(fmt) until nil (f stays open) */
static int l_file_lines(lua_State *L) {
  size_t n;
  check_file(L, "f:lines", "lines");
  check_fmt(L, 2, "f:lines", &n);
  check_nargs(L, 2, "f:lines", 1);
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, l_lines_iter, 3);
  return 1;
}

/* f:write(...) -> f  (strings or numbers, as io.write) */
static int l_file_write(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_file *f = check_file(L, "f:write", "write");
  int i, n = lua_gettop(L) - 1;
  tt_task *t;
  tt_fsreq *r;
  for (i = 2; i <= n + 1; i++)
    if (lua_type(L, i) != LUA_TSTRING && lua_type(L, i) != LUA_TNUMBER)
      return tk_argerror(L, i - 1, "f:write", lua_pushfstring(L, "string "
                         "expected, got %s", luaL_typename(L, i)));
  if (!f->wr) return luaL_error(L, "f:write: the file is not open for writing");
  luaL_checkstack(L, 4, NULL);
  t = tk_fs_task(L, S, "f:write");
  if (n == 0) {
    lua_settop(L, 1);
    return tk_yield_results(L, 1);
  }
  for (i = 2; i <= n + 1; i++) lua_tolstring(L, i, NULL);  /* numbers */
  r = tk_fsreq_new(L, S, FS_WRITE);
  tk_fsreq_iov(L, r, n);
  for (i = 0; i < n; i++) {
    size_t len;
    r->iov[i].iov_base = (void *)lua_tolstring(L, i + 2, &len);
    r->iov[i].iov_len = len;
  }
  r->objidx = 1;
  return tk_fsreq_wait(L, t, r, &f->o);
}

/* f:seek([whence [, offset]]) -> the new position ("set" | "cur" | "end") */
static int l_file_seek(lua_State *L) {
  static const char *const names[] = {"set", "cur", "end", NULL};
  static const int modes[] = {SEEK_SET, SEEK_CUR, SEEK_END};
  tt_sched *S = TT_UPSCHED(L);
  tt_file *f = check_file(L, "f:seek", "seek");
  int whence = modes[luaL_checkoption(L, 2, "cur", names)];
  lua_Integer off;
  int isint;
  tt_task *t;
  tt_fsreq *r;
  off = lua_isnoneornil(L, 3) ? 0 : lua_tointegerx(L, 3, &isint);
  if (!lua_isnoneornil(L, 3) && (!isint || lua_type(L, 3) != LUA_TNUMBER))
    return tk_argerror(L, 2, "f:seek", "integer expected");
  check_nargs(L, 3, "f:seek", 1);
  lua_settop(L, 3);
  t = tk_fs_task(L, S, "f:seek");
  if (whence != SEEK_END && f->o.running == NULL && f->o.qhead == NULL) {
    int64_t p = seek_target(f, whence, (int64_t)off, 0);
    if (p < 0) return tk_file_raise(L, f, uv_translate_sys_error((int)-p), "seek");
    f->pos = p;
    lua_pushinteger(L, (lua_Integer)p);
    return tk_yield_results(L, 1);
  }
  r = tk_fsreq_new(L, S, FS_SEEK);
  r->fmt = whence;
  r->off = (int64_t)off;
  r->local = (uint8_t)(whence != SEEK_END);
  r->objidx = 1;
  return tk_fsreq_wait(L, t, r, &f->o);
}

static int tk_file_simple(lua_State *L, int kind, const char *what,
                          const char *op) {
  tt_sched *S = TT_UPSCHED(L);
  tt_file *f = check_file(L, what, op);
  tt_task *t;
  tt_fsreq *r;
  check_nargs(L, 1, what, 1);
  t = tk_fs_task(L, S, what);
  r = tk_fsreq_new(L, S, kind);
  r->objidx = 1;
  return tk_fsreq_wait(L, t, r, &f->o);
}

/* f:sync()  -- fsync: the data and metadata reach the device */
static int l_file_sync(lua_State *L) {
  return tk_file_simple(L, FS_SYNC, "f:sync", "sync");
}

/* f:stat() -> the table of tether.fs.stat, for the open file */
static int l_file_stat(lua_State *L) {
  return tk_file_simple(L, FS_FSTAT, "f:stat", "stat");
}

/* tostring(f) -> "tether.File 'path'" (", closed" once closed) */
static int l_fsobj_tostring(lua_State *L) {
  tt_io **ud = lua_touserdata(L, 1);
  tt_fsobj *o = ud ? (tt_fsobj *)*ud : NULL;
  const char *name = luaL_getmetafield(L, 1, "__name") == LUA_TSTRING
                         ? lua_tostring(L, -1) : "tether.File";
  if (o == NULL || o->io.closed)
    lua_pushfstring(L, "%s (closed)", name);
  else
    lua_pushfstring(L, "%s '%s'", name, o->path);
  return 1;
}

static void describe_fsobj(lua_State *L, tt_io *io) {
  tt_fsobj *o = (tt_fsobj *)io;
  lua_pushfstring(L, "%s '%s'", io->kind->name, o->path ? o->path : "?");
}

/* What a task blocked on request `io` waits on, for dump: the file or dir,
** or the path. */
static void describe_fsreq(lua_State *L, tt_io *io) {
  tt_fsreq *r = (tt_fsreq *)io;
  if (r->obj) tk_io_push_description(L, &r->obj->io);
  else if (r->path) lua_pushfstring(L, "'%s'", r->path);
  else lua_pushliteral(L, "a file");
}

static const tt_io_kind fsreq_kind = {"fs", NULL, describe_fsreq};
static const tt_io_kind file_kind = {"file", ts_fsobj_close, describe_fsobj};
static const tt_io_kind dir_kind = {"dir", ts_fsobj_close, describe_fsobj};

/* ---- tables and open ---------------------------------------------------- */

static const luaL_Reg file_methods[] = {
  {"read", l_file_read},
  {"lines", l_file_lines},
  {"write", l_file_write},
  {"seek", l_file_seek},
  {"sync", l_file_sync},
  {"stat", l_file_stat},
  {NULL, NULL}
};

static const luaL_Reg dir_methods[] = {
  {NULL, NULL}
};

static const luaL_Reg fs_funcs[] = {
  {"open", l_fs_open},
  {"read_file", l_fs_read_file},
  {"write_file", l_fs_write_file},
  {"stat", l_fs_stat},
  {"lstat", l_fs_lstat},
  {"mkdir", l_fs_mkdir},
  {"remove", l_fs_remove},
  {"rename", l_fs_rename},
  {"copy", l_fs_copy},
  {"mkdtemp", l_fs_mkdtemp},
  {"dir", l_fs_dir},
  {NULL, NULL}
};

static int newmeta(lua_State *L, tt_sched *S, const char *name,
                   const luaL_Reg *m) {
  int ref = tk_io_newmeta(L, S, name, m);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_pushcfunction(L, l_fsobj_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  return ref;
}

/* Register tether.fs into the module table on top of the stack. */
void tt_fs_open(lua_State *L, tt_sched *S) {
  S->io_mt[TT_MT_FILE] = newmeta(L, S, "tether.File", file_methods);
  S->io_mt[TT_MT_DIR] = newmeta(L, S, "tether.Dir", dir_methods);
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, fs_funcs, 1);
  lua_setfield(L, -2, "fs");
}
