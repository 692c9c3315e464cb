/* io_process.c - child processes: tether.process.run/open, the process object, environ, ProcessError */
#define _GNU_SOURCE               /* posix_spawn's setsid and chdir actions */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io.h"

extern char **environ;

/*
** NOTE: how children are started and reaped, and why not with uv_spawn.
** uv_spawn forks and then blocks the loop until the child has exec'd; the
** fork makes every page the parent touches meanwhile a copy-on-write fault,
** and that serialises the starts on a busy loop.  tether uses posix_spawn
** (glibc runs the child on the parent's memory until it execs: no copy, and
** the exec's error comes back as the result, the failed child reaped) and
** reaps its children with one SIGCHLD watcher (waitpid on each of tether's
** children, as libuv does for its own: the two never reap each other's).
** What libuv's traps teach still holds:
** - a process object is freed only once its child was reaped: closing it
**   earlier sends SIGKILL, and the run waits for the exit (no zombie);
** - a spawn that fails leaves nothing open: its pipes are closed before the
**   IOError is raised;
** - a child given one of the parent's standard descriptors gets it
**   blocking (as libuv's children do), which clears O_NONBLOCK for
**   everyone who shares the description: io_stdio.c sets it again;
** - execvp would search the PATH of the parent: the program is looked up
**   here, on opts.env.PATH when env is given (/bin:/usr/bin when it has
**   none), and run by path (under /bin/sh for ENOEXEC, as execvp does).
** Pipes are made here (close-on-exec) and the child gets its ends by dup2,
** so stderr = "stdout" hands one pipe to both descriptors and nothing else
** reaches the child (everything tether opens is close-on-exec).
*/

/* ---- types ------------------------------------------------------------ */

enum { SIO_INHERIT, SIO_NULL, SIO_CAPTURE, SIO_PIPE, SIO_FEED, SIO_MERGE };

enum { CAP_NONE, CAP_OPEN, CAP_CLOSING, CAP_CLOSED };

typedef struct tt_proc tt_proc;

/* A pipe that the process object services itself: a captured output, or
** the stdin it feeds. */
typedef struct tt_cap {
  uv_pipe_t pipe;
  tt_proc *p;
  char *buf;                /* captured bytes, or the bytes to feed */
  size_t len, cap;
  int err;                  /* a read error (not EOF) */
  uint8_t state;            /* CAP_* */
} tt_cap;

struct tt_proc {
  tt_io io;
  TT_LINK(tt_proc) clink;   /* in `children` until reaped */
  uv_timer_t grace;         /* SIGTERM, then SIGKILL when it fires */
  tt_cap out, err, in;      /* captured stdout, stderr; fed stdin */
  uv_write_t wreq;
  tt_op op;                 /* run: the child exited and its captures closed */
  tt_op wop;                /* p:wait(): the child exited */
  tt_op cop;                /* p:close(): the child was reaped (shielded) */
  double grace_s;
  size_t max_output;        /* 0: unbounded */
  int pid;
  int killslot;             /* in killtab, or -1 */
  int64_t exit_status;
  int term_signal;
  uint8_t spawned;          /* started: the child must be reaped */
  uint8_t exited;           /* reaped */
  uint8_t timer;            /* 0: none, 1: initialised, 2: closing */
  uint8_t terminating;      /* tether terminated it (cancel, close, overflow) */
  uint8_t run_cancelled;    /* run's wait was taken back by a cancellation */
  uint8_t kill_group;
  uint8_t overflow;         /* a capture passed max_output */
  uint8_t cap_out, cap_err; /* run: stdout/stderr are captured */
  uint8_t check;            /* run: a failure raises ProcessError */
};

/* What process.run/open were asked for, parsed before anything starts. */
typedef struct spawn_req {
  const char *fname;
  int mode[3];              /* SIO_* */
  const char *feed;
  size_t feedlen;
  const char *cwd;
  const char *file;         /* the program, looked up on PATH */
  int check, kill_group;
  double grace;
  size_t max_output;
  int argvidx;              /* the argv copy (strings) on the stack */
  int envidx;               /* the "K=V" strings on the stack, or 0 */
  int nargs, nenv;
  int find_err;             /* the program was not found: this error */
} spawn_req;

/* ---- the second Ctrl-C ------------------------------------------------ */

/*
** The children (and child groups, as -pgid) alive now, for the handler of
** a second Ctrl-C, which must SIGKILL them before the process dies.  A
** plain array that a signal handler may read: no locks, no allocation.
** Children past its size are not SIGKILLed there (still SIGTERMed by the
** cancellation the first Ctrl-C started).
*/
#define TT_KILLTAB 4096
static volatile sig_atomic_t killtab[TT_KILLTAB];
static int killtab_hint;

static void ts_killtab_add(tt_proc *p) {
  int i, n;
  p->killslot = -1;
  for (n = 0; n < TT_KILLTAB; n++) {
    i = (killtab_hint + n) % TT_KILLTAB;
    if (killtab[i] == 0) {
      killtab[i] = p->kill_group ? -p->pid : p->pid;
      p->killslot = i;
      killtab_hint = i + 1;
      return;
    }
  }
}

static void ts_killtab_remove(tt_proc *p) {
  if (p->killslot < 0) return;
  killtab[p->killslot] = 0;
  killtab_hint = p->killslot;
  p->killslot = -1;
}

static void tt_second_sigint(int sig) {
  int i;
  for (i = 0; i < TT_KILLTAB; i++)
    if (killtab[i] != 0) kill((pid_t)killtab[i], SIGKILL);
  /* SA_RESETHAND made the disposition SIG_DFL: this ends the process once
     the handler returns and the signal is unblocked. */
  raise(sig);
}

/* ---- static helpers: the child's life ---------------------------------- */

/* Send `sig` to the child, or to its whole group with kill_group. */
static void ts_proc_signal(tt_proc *p, int sig) {
  if (!p->spawned || p->exited) return;
  kill(p->kill_group ? -(pid_t)p->pid : (pid_t)p->pid, sig);
}

/* Nothing of the child is left pending: it exited, its pipes and its grace
** timer are closed. */
static int ts_proc_finished(tt_proc *p) {
  return p->exited && p->timer != 1 && p->timer != 2 &&
         (p->out.state == CAP_NONE || p->out.state == CAP_CLOSED) &&
         (p->err.state == CAP_NONE || p->err.state == CAP_CLOSED) &&
         (p->in.state == CAP_NONE || p->in.state == CAP_CLOSED);
}

/* run's wait is over once everything is finished. */
static void ts_proc_check(tt_proc *p) {
  if (p->op.task && ts_proc_finished(p))
    ts_op_done(&p->op, p->run_cancelled ? UV_ECANCELED : 0);
}

static void ts_timer_closed(uv_handle_t *h) {
  tt_proc *p = h->data;
  p->timer = 3;
  ts_proc_check(p);
  ts_io_release(&p->io);
}

static void ts_proc_timer_close(tt_proc *p) {
  if (p->timer != 1) return;
  p->timer = 2;
  uv_close((uv_handle_t *)&p->grace, ts_timer_closed);
}

static void ts_on_grace(uv_timer_t *h) {
  tt_proc *p = h->data;
  ts_proc_signal(p, SIGKILL);
}

/* Terminate the child: SIGTERM now, SIGKILL after the grace period. */
static void ts_proc_terminate(tt_proc *p) {
  if (!p->spawned || p->exited || p->terminating) return;
  p->terminating = 1;
  if (p->grace_s <= 0) {
    ts_proc_signal(p, SIGKILL);
    return;
  }
  ts_proc_signal(p, SIGTERM);
  if (p->timer == 0 && uv_timer_init(p->io.S->loop, &p->grace) == 0) {
    p->grace.data = p;
    p->timer = 1;
    ts_io_hold(&p->io);
    uv_timer_start(&p->grace, ts_on_grace,
                   (uint64_t)(p->grace_s * 1000 + 0.999), 0);
  }
}

static void ts_cap_closed(uv_handle_t *h) {
  tt_cap *c = h->data;
  tt_proc *p = c->p;
  c->state = CAP_CLOSED;
  if (c == &p->in) {              /* the write callback ran before this */
    free(c->buf);
    c->buf = NULL;
  }
  ts_proc_check(p);
  ts_io_release(&p->io);
}

static void ts_cap_close(tt_cap *c) {
  if (c->state != CAP_OPEN) return;
  c->state = CAP_CLOSING;
  uv_close((uv_handle_t *)&c->pipe, ts_cap_closed);
}

static void ts_cap_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  tt_cap *c = h->data;
  (void)suggested;
  if (c->cap - c->len < 65536) {
    size_t ncap = c->cap ? c->cap * 2 : 65536;
    char *nb;
    while (ncap - c->len < 65536) ncap *= 2;
    nb = realloc(c->buf, ncap);
    if (nb == NULL) {                  /* libuv reports UV_ENOBUFS */
      b->base = NULL;
      b->len = 0;
      return;
    }
    c->buf = nb;
    c->cap = ncap;
  }
  b->base = c->buf + c->len;
  b->len = c->cap - c->len;
}

static void ts_cap_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  tt_cap *c = s->data;
  tt_proc *p = c->p;
  (void)b;
  if (n > 0) {
    c->len += (size_t)n;
    if (p->max_output && c->len > p->max_output) {
      c->len = p->max_output;
      p->overflow = 1;
      ts_cap_close(c);
      ts_proc_terminate(p);
    }
    return;
  }
  if (n == 0) return;
  if (n != UV_EOF) c->err = (int)n;
  ts_cap_close(c);
}

static void ts_feed_done(uv_write_t *req, int status) {
  tt_proc *p = req->data;
  (void)status;           /* a child that did not read it all is no error */
  ts_cap_close(&p->in);
}

/* The child was reaped with wait status `st`. */
static void ts_proc_exit(tt_proc *p, int st) {
  p->exited = 1;
  if (WIFSIGNALED(st)) p->term_signal = WTERMSIG(st);
  else p->exit_status = WEXITSTATUS(st);
  ts_killtab_remove(p);
  /* A terminated group: SIGKILL what is left of it (grandchildren). */
  if (p->kill_group && p->terminating) kill(-(pid_t)p->pid, SIGKILL);
  ts_proc_timer_close(p);
  ts_cap_close(&p->in);
  if (p->terminating || p->io.closed) {
    ts_cap_close(&p->out);
    ts_cap_close(&p->err);
  }
  if (p->wop.task) ts_op_done(&p->wop, 0);
  if (p->cop.task) ts_op_done(&p->cop, 0);
  ts_proc_check(p);
  ts_io_release(&p->io);          /* the child's hold: p may be freed */
}

/* ---- static helpers: children and SIGCHLD ------------------------------ */

/* tether's children not yet reaped, and the SIGCHLD watcher that reaps
** them (alive while there are any). */
static tt_proc *children;
static int nchildren;
static uv_signal_t *chld;

static void ts_chld_closed(uv_handle_t *h) {
  tt_sched *S = h->data;
  free(h);
  S->nhandles--;
}

static void ts_on_chld(uv_signal_t *h, int signum) {
  int n = nchildren;
  tt_proc *p = children;
  (void)signum;
  while (n-- > 0 && p) {
    tt_proc *next = p->clink.next;
    int st;
    pid_t r = waitpid((pid_t)p->pid, &st, WNOHANG);
    if (r == (pid_t)p->pid || (r < 0 && errno == ECHILD)) {
      if (r < 0) st = 0;         /* reaped by someone else: no status */
      TT_LIST_REMOVE(children, p, clink);
      nchildren--;
      ts_proc_exit(p, st);
    }
    p = next;
  }
  if (nchildren == 0 && chld) {  /* nothing left to reap */
    uv_close((uv_handle_t *)chld, ts_chld_closed);
    chld = NULL;
  }
  (void)h;
}

/* Watch SIGCHLD (before the fork: a child may exit at once). */
static int ts_chld_watch(tt_sched *S) {
  int r;
  if (chld) return 0;
  chld = malloc(sizeof *chld);
  if (chld == NULL) return UV_ENOMEM;
  uv_signal_init(S->loop, chld);
  chld->data = S;
  S->nhandles++;
  r = uv_signal_start(chld, ts_on_chld, SIGCHLD);
  if (r < 0 && nchildren == 0) {
    uv_close((uv_handle_t *)chld, ts_chld_closed);
    chld = NULL;
  }
  return r;
}

/* ---- static helpers: the I/O kind --------------------------------------- */

/*
** Close (p:close without waiting, __gc, the end of the run): SIGKILL a
** child still running; its handle is closed once its exit callback came.
*/
static void ts_proc_close(tt_io *io) {
  tt_proc *p = (tt_proc *)io;
  if (!p->spawned) return;
  if (!p->exited) {
    p->terminating = 1;
    ts_proc_signal(p, SIGKILL);
  }
  ts_cap_close(&p->out);
  ts_cap_close(&p->err);
  ts_cap_close(&p->in);
  ts_proc_timer_close(p);
}

static void ts_proc_describe(lua_State *L, tt_io *io) {
  tt_proc *p = (tt_proc *)io;
  if (p->spawned) lua_pushfstring(L, "process %d", p->pid);
  else lua_pushliteral(L, "process (not started)");
}

static const tt_io_kind proc_kind = {
  "process", ts_proc_close, ts_proc_describe
};

static const tt_io_kind pipe_kind = {
  "pipe", ts_stream_close, NULL
};

/* ---- static helpers: arguments ------------------------------------------ */

/* Is `s` a word a shell would read as itself? */
static int plain_word(const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++)
    if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') ||
          ('0' <= *s && *s <= '9') || strchr("_@%+=:,./-", *s)))
      return 0;
  return 1;
}

/* Push the command line of the argv table at `idx`, quoted as for sh. */
static void tk_push_cmdline(lua_State *L, int idx) {
  luaL_Buffer b;
  lua_Integer i, n = (lua_Integer)lua_rawlen(L, idx);
  idx = lua_absindex(L, idx);
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    const char *s;
    lua_rawgeti(L, idx, i);
    s = lua_tostring(L, -1);
    lua_pop(L, 1);                 /* the table keeps the string alive */
    if (s == NULL) continue;
    if (i > 1) luaL_addchar(&b, ' ');
    if (plain_word(s)) {
      luaL_addstring(&b, s);
      continue;
    }
    luaL_addchar(&b, '\'');
    for (; *s; s++) {
      if (*s == '\'') luaL_addstring(&b, "'\\''");
      else luaL_addchar(&b, *s);
    }
    luaL_addchar(&b, '\'');
  }
  luaL_pushresult(&b);
}

/* What exec would say of `file` (0, or ENOENT, EACCES...): a file that
** exists, is not a directory and may be executed. */
static int ts_exec_check(const char *file) {
  struct stat st;
  if (stat(file, &st) != 0) return uv_translate_sys_error(errno);
  if (S_ISDIR(st.st_mode) || access(file, X_OK) != 0) return UV_EACCES;
  return 0;
}

/* What chdir would say of `cwd`. */
static int ts_cwd_check(const char *cwd) {
  struct stat st;
  if (stat(cwd, &st) != 0) return uv_translate_sys_error(errno);
  if (!S_ISDIR(st.st_mode)) return UV_ENOTDIR;
  if (access(cwd, X_OK) != 0) return UV_EACCES;
  return 0;
}

/*
** The program `name` on the search path `path` (as execvp: a name with a
** slash is taken as it is, relative to `cwd` when given; a file found but
** not executable is skipped and reported as EACCES if nothing else is
** found).  Pushes the path found and returns 0, or returns a libuv error.
** NOTE: the checks are made here, in the parent, and not only by the exec:
** the error is then known before anything is made, also where posix_spawn
** cannot report the exec's (under valgrind, which runs vfork as fork).
*/
static int tk_find_program(lua_State *L, const char *name, const char *path,
                           const char *cwd) {
  int err = UV_ENOENT;
  if (strchr(name, '/')) {
    if (name[0] != '/' && cwd) lua_pushfstring(L, "%s/%s", cwd, name);
    else lua_pushstring(L, name);
    err = ts_exec_check(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (err < 0) return err;
    lua_pushstring(L, name);
    return 0;
  }
  if (*name == '\0') return UV_ENOENT;
  for (;;) {
    const char *end = strchr(path, ':');
    size_t len = end ? (size_t)(end - path) : strlen(path);
    struct stat st;
    const char *cand;
    if (len == 0) lua_pushfstring(L, "./%s", name);
    else {
      lua_pushlstring(L, path, len);
      lua_pushfstring(L, "%s/%s", lua_tostring(L, -1), name);
      lua_remove(L, -2);
    }
    cand = lua_tostring(L, -1);
    if (stat(cand, &st) == 0 && S_ISREG(st.st_mode)) {
      if (access(cand, X_OK) == 0) return 0;
      err = UV_EACCES;
    }
    lua_pop(L, 1);
    if (end == NULL) return err;
    path = end + 1;
  }
}

/* Parse one stdio option: stdin/stdout/stderr. */
static int tk_stdio_opt(lua_State *L, int opts, spawn_req *r, int fd,
                        int def) {
  static const char *const names[] = {"stdin", "stdout", "stderr"};
  const char *key = names[fd], *s;
  int ty = tk_opt_field(L, opts, key), m = -1;
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if (ty != LUA_TSTRING) {
    lua_pushfstring(L, "option '%s': string expected, got %s", key,
                    luaL_typename(L, -1));
    return tk_argerror(L, opts, r->fname, lua_tostring(L, -1));
  }
  s = lua_tostring(L, -1);
  if (strcmp(s, "inherit") == 0) m = SIO_INHERIT;
  else if (strcmp(s, "null") == 0) m = SIO_NULL;
  else if (strcmp(s, "pipe") == 0) m = SIO_PIPE;
  else if (fd > 0 && strcmp(s, "capture") == 0) m = SIO_CAPTURE;
  else if (fd == 2 && strcmp(s, "stdout") == 0) m = SIO_MERGE;
  else if (fd == 0) {
    m = SIO_FEED;                 /* the options table keeps it alive */
    r->feed = lua_tolstring(L, -1, &r->feedlen);
  } else {
    lua_pushfstring(L, "option '%s': \"capture\", \"pipe\", \"inherit\", "
                    "\"null\"%s expected, got '%s'", key,
                    fd == 2 ? " or \"stdout\"" : "", s);
    return tk_argerror(L, opts, r->fname, lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  return m;
}

static const char *const run_keys[] = {
  "cwd", "env", "stdin", "stdout", "stderr", "check", "max_output", "grace",
  "kill_group", NULL
};
static const char *const open_keys[] = {
  "cwd", "env", "stdin", "stdout", "stderr", "grace", "kill_group", NULL
};

/*
** Parse argv (argument `aarg`) and the options (`oarg`) of run or open
** (`is_run`; `started`: run under g:start).  Leaves on the stack the argv
** copy, the environment strings (when env is given) and the program path.
*/
static void tk_spawn_parse(lua_State *L, spawn_req *r, int aarg, int oarg,
                           int is_run, int started) {
  int opts, i, n, err, ty, pathi = 0;
  const char *path = NULL;
  memset(r, 0, sizeof *r);
  r->fname = is_run ? "tether.process.run" : "tether.process.open";
  if (lua_type(L, aarg) == LUA_TSTRING)
    tk_argerror(L, aarg, r->fname, "argv: array of strings expected, got a "
                "string (there is no shell: use { \"sh\", \"-c\", cmd })");
  if (!lua_istable(L, aarg)) {
    lua_pushfstring(L, "argv: array of strings expected, got %s",
                    luaL_typename(L, aarg));
    tk_argerror(L, aarg, r->fname, lua_tostring(L, -1));
  }
  opts = tk_check_opts(L, oarg, r->fname, is_run ? run_keys : open_keys)
         ? oarg : 0;
  n = (int)lua_rawlen(L, aarg);
  if (n == 0) tk_argerror(L, aarg, r->fname, "argv is empty");
  lua_createtable(L, n, 0);
  r->argvidx = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, aarg, i);
    lua_pushfstring(L, "argv[%d]", i);
    tk_check_cstr(L, -2, r->fname, lua_tostring(L, -1), NULL);
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TNUMBER) lua_tolstring(L, -1, NULL);
    lua_rawseti(L, r->argvidx, i);
  }
  r->nargs = n;
  r->mode[0] = tk_stdio_opt(L, opts, r, 0, is_run ? SIO_NULL : SIO_INHERIT);
  r->mode[1] = tk_stdio_opt(L, opts, r, 1, is_run ? SIO_CAPTURE : SIO_INHERIT);
  r->mode[2] = tk_stdio_opt(L, opts, r, 2, is_run ? SIO_CAPTURE : SIO_INHERIT);
  for (i = 0; i < 3; i++) {
    if (r->mode[i] == SIO_PIPE && is_run && !started)
      tk_argerror(L, oarg, r->fname, "\"pipe\" is for tether.process.open "
                  "and for g:start(tether.process.run, ...): nobody else "
                  "could read or write it");
    if (r->mode[i] == SIO_CAPTURE && !is_run)
      tk_argerror(L, oarg, r->fname, "\"capture\" is for tether.process.run"
                  " (use \"pipe\" and read the stream)");
  }
  r->cwd = tk_opt_str(L, opts, "cwd", r->fname);
  r->check = is_run ? tk_opt_bool(L, opts, "check", 1, r->fname) : 0;
  r->kill_group = tk_opt_bool(L, opts, "kill_group", 0, r->fname);
  r->grace = tk_opt_num(L, opts, "grace", 5, r->fname);
  if (r->grace < 0) tk_argerror(L, oarg, r->fname,
                                "option 'grace': non-negative number expected");
  if (is_run) {
    lua_Number mo;
    ty = tk_opt_field(L, opts, "max_output");
    lua_pop(L, 1);
    mo = tk_opt_num(L, opts, "max_output", 0, r->fname);
    if (ty != LUA_TNIL && !(mo >= 1))
      tk_argerror(L, oarg, r->fname, "option 'max_output': positive number "
                  "expected");
    r->max_output = mo >= 1e18 ? 0 : (size_t)mo;
  }
  ty = tk_opt_field(L, opts, "env");
  if (ty == LUA_TTABLE) {
    int env = lua_gettop(L);
    lua_newtable(L);
    r->envidx = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, env)) {
      const char *k;
      int kidx = lua_gettop(L) - 1;
      if (lua_type(L, kidx) != LUA_TSTRING)
        tk_argerror(L, oarg, r->fname, "option 'env': names must be strings");
      k = lua_tostring(L, kidx);
      if (*k == '\0' || strchr(k, '=') || strlen(k) != lua_rawlen(L, kidx)) {
        lua_pushfstring(L, "option 'env': bad variable name '%s'", k);
        tk_argerror(L, oarg, r->fname, lua_tostring(L, -1));
      }
      lua_pushfstring(L, "option 'env': value of %s", k);
      tk_check_cstr(L, -2, r->fname, lua_tostring(L, -1), NULL);
      lua_pop(L, 1);
      if (strcmp(k, "PATH") == 0) pathi = r->nenv + 1;
      lua_pushfstring(L, "%s=%s", k, lua_tostring(L, -1));
      lua_rawseti(L, r->envidx, ++r->nenv);
      lua_pop(L, 1);
    }
    lua_remove(L, env);
    r->envidx = lua_gettop(L);
    if (pathi == 0) path = "/bin:/usr/bin";
    else {                         /* "PATH=...": the env copy keeps it */
      lua_rawgeti(L, r->envidx, pathi);
      path = lua_tostring(L, -1) + 5;
      lua_pop(L, 1);
    }
  } else if (ty != LUA_TNIL) {
    lua_pushfstring(L, "option 'env': table expected, got %s",
                    luaL_typename(L, -1));
    tk_argerror(L, oarg, r->fname, lua_tostring(L, -1));
  } else {
    lua_pop(L, 1);
    path = getenv("PATH");
    if (path == NULL) path = "/bin:/usr/bin";
  }
  lua_rawgeti(L, r->argvidx, 1);
  err = r->cwd ? ts_cwd_check(r->cwd) : 0;
  if (err == 0) err = tk_find_program(L, lua_tostring(L, -1), path, r->cwd);
  lua_remove(L, -1 - (err == 0));
  if (err < 0) {
    lua_pushnil(L);                /* keep the stack shape */
    r->file = NULL;
    r->find_err = err;             /* tk_spawn raises it */
    return;
  }
  r->file = lua_tostring(L, -1);
}

/* Raise the IOError of a spawn that failed with `err`. */
static int tk_spawn_error(lua_State *L, tt_sched *S, spawn_req *r, int err) {
  tk_new_ioerror(L, S, TT_CLS_IO, err, "spawn");
  lua_pushvalue(L, r->argvidx);
  lua_setfield(L, -2, "argv");
  if (r->cwd) {
    lua_pushstring(L, r->cwd);
    lua_setfield(L, -2, "cwd");
  }
  return lua_error(L);
}

/* Open the parent's end `fd` of a pipe on handle `pipe`; 0 or an error
** (the handle is initialised either way). */
static int ts_pipe_open(tt_sched *S, uv_pipe_t *pipe, int fd) {
  int r = uv_pipe_init(S->loop, pipe, 0);
  if (r < 0) return r;
  return uv_pipe_open(pipe, fd);
}

/*
** posix_spawn the child: `src` are the descriptors to make its 0, 1, 2
** (-1: /dev/null; equal to i: inherited).  glibc's posix_spawn runs the
** child on the parent's memory until it execs (no copy-on-write faults in
** the parent) and returns the exec's error, having reaped a failed child.
*/
static int ts_pspawn(const char *file, char **args, char **env,
                     const char *cwd, int setsid_, const int src[3],
                     pid_t *pid) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t all, none;
  int i, r;
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (posix_spawn_file_actions_init(&fa) != 0) return UV_ENOMEM;
  if (posix_spawnattr_init(&at) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    return UV_ENOMEM;
  }
  for (i = 0; i < 3; i++) {
    if (src[i] == i) {
      /* children get blocking stdio (as libuv's do); io_stdio.c sets
         O_NONBLOCK again on its streams that share the description */
      int fl = fcntl(i, F_GETFL);
      if (fl != -1 && (fl & O_NONBLOCK)) fcntl(i, F_SETFL, fl & ~O_NONBLOCK);
    } else if (src[i] < 0) {
      posix_spawn_file_actions_addopen(&fa, i, "/dev/null",
                                       i == 0 ? O_RDONLY : O_RDWR, 0);
    } else {
      posix_spawn_file_actions_adddup2(&fa, src[i], i);
    }
  }
  if (cwd) posix_spawn_file_actions_addchdir_np(&fa, cwd);
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&at, &all);   /* SIGPIPE is ignored here */
  posix_spawnattr_setsigmask(&at, &none);
  if (setsid_) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&at, flags);
  r = posix_spawn(pid, file, &fa, &at, args, env ? env : environ);
  if (r == ENOEXEC) {             /* as execvp: no #!, so sh runs it */
    int n = 0;
    while (args[n]) n++;
    {
      char *sh[n + 2];
      sh[0] = (char *)"sh";
      sh[1] = (char *)file;
      for (i = 1; i <= n; i++) sh[i + 1] = args[i];
      r = posix_spawn(pid, "/bin/sh", &fa, &at, sh, env ? env : environ);
    }
  }
  posix_spawnattr_destroy(&at);
  posix_spawn_file_actions_destroy(&fa);
  return r ? uv_translate_sys_error(r) : 0;
}

/*
** Start the child that `r` describes: push the process userdata, with its
** table of fields (argv, pid, stdin/stdout/stderr streams) as user value.
** Raises the IOError of a failed spawn, leaving nothing open.
*/
static tt_proc *tk_spawn(lua_State *L, tt_sched *S, spawn_req *r) {
  int fds[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};  /* parent's, child's */
  int src[3] = {-1, -1, -1};      /* what the child makes 0, 1, 2 */
  tt_stream *streams[3] = {NULL, NULL, NULL};
  char **args, **env = NULL;
  int i, err = 0, udidx, fields;
  tt_proc *p;
  if (r->file == NULL) return (tk_spawn_error(L, S, r, r->find_err), NULL);
  args = lua_newuserdatauv(L, sizeof(char *) * (size_t)(r->nargs + 1 +
                                                      r->nenv + 1), 0);
  for (i = 0; i < r->nargs; i++) {
    lua_rawgeti(L, r->argvidx, i + 1);
    args[i] = (char *)lua_tostring(L, -1);   /* argv copy keeps it */
    lua_pop(L, 1);
  }
  args[r->nargs] = NULL;
  if (r->envidx) {
    env = args + r->nargs + 1;
    for (i = 0; i < r->nenv; i++) {
      lua_rawgeti(L, r->envidx, i + 1);
      env[i] = (char *)lua_tostring(L, -1);
      lua_pop(L, 1);
    }
    env[r->nenv] = NULL;
  }
  p = tk_io_new(L, S, sizeof(tt_proc), &proc_kind, S->io_mt[TT_MT_PROCESS]);
  udidx = lua_gettop(L);
  p->killslot = -1;
  p->grace_s = r->grace;
  p->max_output = r->max_output;
  p->kill_group = (uint8_t)r->kill_group;
  p->out.p = p->err.p = p->in.p = p;
  lua_createtable(L, 0, 6);
  fields = lua_gettop(L);
  lua_pushvalue(L, r->argvidx);
  lua_setfield(L, fields, "argv");
  if (r->cwd) {
    lua_pushstring(L, r->cwd);
    lua_setfield(L, fields, "cwd");
  }
  lua_pushvalue(L, fields);
  lua_setiuservalue(L, udidx, 1);
  for (i = 0; i < 3; i++) {       /* the streams exist before the child */
    static const char *const names[] = {"stdin", "stdout", "stderr"};
    if (r->mode[i] != SIO_PIPE) continue;
    streams[i] = tk_stream_new(L, S, &pipe_kind);
    lua_setfield(L, fields, names[i]);
  }
  if (r->mode[0] == SIO_FEED && r->feedlen > 0) {
    p->in.buf = malloc(r->feedlen);
    if (p->in.buf == NULL) {
      ts_io_close(&p->io);
      for (i = 0; i < 3; i++) if (streams[i]) ts_io_close(&streams[i]->io);
      luaL_error(L, "not enough memory");
    }
    memcpy(p->in.buf, r->feed, r->feedlen);
    p->in.len = r->feedlen;
  }
  for (i = 0; i < 3 && err == 0; i++) {
    switch (r->mode[i]) {
      case SIO_INHERIT: src[i] = i; break;
      case SIO_NULL: src[i] = -1; break;
      case SIO_MERGE: src[i] = src[1]; break;
      default: {                  /* a pipe: [0] read end, [1] write end */
        uv_file pf[2];
        /* NOTE: a "pipe" stream is a socketpair, as libuv's own
           UV_CREATE_PIPE: close_write is a shutdown(2), which a pipe has
           not.  Captures and the fed stdin are real pipes. */
        if (r->mode[i] == SIO_PIPE)
          err = uv_socketpair(SOCK_STREAM, 0, pf, 0, 0);
        else
          err = uv_pipe(pf, 0, 0);
        if (err < 0) break;
        fds[i][0] = i == 0 ? pf[1] : pf[0];
        fds[i][1] = i == 0 ? pf[0] : pf[1];
        src[i] = fds[i][1];
      }
    }
  }
  if (err == 0) err = ts_chld_watch(S);
  if (err == 0) {
    pid_t pid;
    err = ts_pspawn(r->file, args, env, r->cwd, r->kill_group, src, &pid);
    if (err == 0) p->pid = (int)pid;
  }
  for (i = 0; i < 3; i++)
    if (fds[i][1] >= 0) close(fds[i][1]);
  if (err < 0) {
    for (i = 0; i < 3; i++) {
      if (fds[i][0] >= 0) close(fds[i][0]);
      if (streams[i]) ts_io_close(&streams[i]->io);
    }
    free(p->in.buf);
    p->in.buf = NULL;
    ts_io_close(&p->io);
    if (nchildren == 0 && chld) {
      uv_close((uv_handle_t *)chld, ts_chld_closed);
      chld = NULL;
    }
    tk_spawn_error(L, S, r, err);
  }
  p->spawned = 1;
  ts_io_hold(&p->io);             /* the child's: released once reaped */
  TT_LIST_APPEND(children, p, clink);
  nchildren++;
  ts_killtab_add(p);
  ts_stdio_after_spawn(S);
  lua_pushinteger(L, p->pid);
  lua_setfield(L, fields, "pid");
  for (i = 0; i < 3; i++) {
    int fd = fds[i][0];
    tt_cap *c = i == 0 ? &p->in : i == 1 ? &p->out : &p->err;
    if (fd < 0) continue;
    if (streams[i]) {
      err = ts_pipe_open(S, &streams[i]->h.pipe, fd);
      ts_stream_opened(streams[i]);
      if (err < 0) {
        close(fd);
        ts_io_close(&streams[i]->io);
      }
      continue;
    }
    err = ts_pipe_open(S, &c->pipe, fd);
    c->pipe.data = c;
    c->state = CAP_OPEN;
    ts_io_hold(&p->io);
    if (err < 0) {
      close(fd);
      c->err = err;
      ts_cap_close(c);
      continue;
    }
    if (i > 0) {
      err = uv_read_start((uv_stream_t *)&c->pipe, ts_cap_alloc, ts_cap_read);
      if (err < 0) {
        c->err = err;
        ts_cap_close(c);
      }
    } else if (c->len == 0) {
      ts_cap_close(c);            /* stdin = "": EOF at once */
    } else {
      uv_buf_t b = uv_buf_init(c->buf, (unsigned)c->len);
      p->wreq.data = p;
      if (uv_write(&p->wreq, (uv_stream_t *)&c->pipe, &b, 1,
                   ts_feed_done) < 0)
        ts_cap_close(c);
    }
  }
  lua_settop(L, udidx);
  return p;
}

/* Push the exit code (or nil) and the signal name (or nil) of `p`. */
static void tk_push_status(lua_State *L, tt_proc *p) {
  if (p->term_signal) {
    const char *name = ts_signal_name(p->term_signal);
    lua_pushnil(L);
    if (name) lua_pushstring(L, name);
    else lua_pushfstring(L, "SIG%d", p->term_signal);
  } else {
    lua_pushinteger(L, (lua_Integer)p->exit_status);
    lua_pushnil(L);
  }
}

/* Copy the exit status of `p` (exited) into the fields table of the
** process userdata at `ud`, so it stays readable once `p` is freed. */
static void tk_proc_sync(lua_State *L, int ud, tt_proc *p) {
  if (p == NULL || !p->exited) return;
  ud = lua_absindex(L, ud);
  lua_getiuservalue(L, ud, 1);
  tk_push_status(L, p);
  lua_setfield(L, -3, "signal");
  lua_setfield(L, -2, "exit_code");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "exited");
  lua_pop(L, 1);
}

/* Push the captured bytes of `c` (or nil when not captured) and free them. */
static void tk_push_capture(lua_State *L, tt_cap *c, int mode) {
  if (mode == SIO_CAPTURE) lua_pushlstring(L, c->buf ? c->buf : "", c->len);
  else lua_pushnil(L);
  free(c->buf);
  c->buf = NULL;
  c->len = c->cap = 0;
}

/* ---- bindings: run ---------------------------------------------------- */

static void ts_run_cancel(tt_op *op) {
  tt_proc *p = (tt_proc *)op->io;
  p->run_cancelled = 1;
  ts_proc_terminate(p);
  ts_proc_check(p);
}

/* Raise the ProcessError of the run whose result table is at `res`. */
static int tk_raise_procerror(lua_State *L, tt_sched *S, int res) {
  int e;
  tk_new_error(L, S, TT_CLS_PROCESS, NULL);
  e = lua_gettop(L);
  lua_getfield(L, res, "argv");
  lua_setfield(L, e, "argv");
  lua_getfield(L, res, "exit_code");
  lua_setfield(L, e, "exit_code");
  lua_getfield(L, res, "signal");
  lua_setfield(L, e, "signal");
  lua_getfield(L, res, "stdout");
  lua_setfield(L, e, "stdout");
  lua_getfield(L, res, "stderr");
  lua_setfield(L, e, "stderr");
  lua_getfield(L, res, "argv");
  tk_push_cmdline(L, -1);
  if (lua_getfield(L, res, "signal") == LUA_TSTRING)
    lua_pushfstring(L, "command \"%s\" was killed by %s", lua_tostring(L, -2),
                    lua_tostring(L, -1));
  else {
    lua_getfield(L, res, "exit_code");
    lua_pushfstring(L, "command \"%s\" exited with code %d",
                    lua_tostring(L, -3), (int)lua_tointeger(L, -1));
  }
  lua_setfield(L, e, "message");
  lua_settop(L, e);
  return lua_error(L);
}

/* After run's wait: the process userdata is on top. */
static int k_run(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  int ud = lua_gettop(L), res, err, failed, cancelled;
  tt_io **slot = lua_touserdata(L, ud);
  tt_proc *p = (tt_proc *)*slot;
  (void)status; (void)ctx;
  cancelled = p->run_cancelled;
  lua_createtable(L, 0, 6);
  res = lua_gettop(L);
  tk_push_status(L, p);
  lua_setfield(L, res, "signal");
  lua_setfield(L, res, "exit_code");
  tk_push_capture(L, &p->out, p->cap_out ? SIO_CAPTURE : SIO_NULL);
  lua_setfield(L, res, "stdout");
  tk_push_capture(L, &p->err, p->cap_err ? SIO_CAPTURE : SIO_NULL);
  lua_setfield(L, res, "stderr");
  lua_getiuservalue(L, ud, 1);
  lua_getfield(L, -1, "argv");
  lua_setfield(L, res, "argv");
  lua_getfield(L, -1, "pid");
  lua_setfield(L, res, "pid");
  lua_pop(L, 1);
  tk_proc_sync(L, ud, p);
  err = p->overflow ? UV_ENOBUFS : p->out.err ? p->out.err : p->err.err;
  failed = p->check && !p->terminating &&
           (p->term_signal != 0 || p->exit_status != 0);
  ts_io_close(&p->io);            /* the task's hold keeps p till we return */
  if (cancelled) {
    tt_scope *s = S->current ? ts_cancelled(S->current) : NULL;
    if (s) return tk_raise_cancelled(L, S, s);
  }
  if (err) {
    tk_new_ioerror(L, S, TT_CLS_IO, err, "read");
    lua_getfield(L, res, "argv");
    lua_setfield(L, -2, "argv");
    return lua_error(L);
  }
  if (failed) return tk_raise_procerror(L, S, res);
  return 1;
}

/*
** tether.process.run(argv [, opts]) -> { exit_code, signal, stdout, stderr }
** tether.process.run(started, argv [, opts])   -- as g:start runs it:
**   started(p) hands the live process to the starter.
*/
static int l_process_run(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  int started = lua_isfunction(L, 1), base = started ? 2 : 1;
  spawn_req r;
  tt_task *t;
  tt_scope *s;
  tt_proc *p;
  lua_settop(L, base + 1);
  tk_spawn_parse(L, &r, base, base + 1, 1, started);
  t = tk_current(L, S, "tether.process.run");
  if ((s = ts_cancelled(t)) != NULL) return tk_raise_cancelled(L, S, s);
  p = tk_spawn(L, S, &r);
  p->cap_out = r.mode[1] == SIO_CAPTURE;
  p->cap_err = r.mode[2] == SIO_CAPTURE;
  p->check = (uint8_t)r.check;
  if (started) {                  /* under g:start: hand it over (the spawn
                                     errors were raised from g:start) */
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
  }
  ts_op_init(&p->op, &p->io, "process.run", ts_run_cancel);
  p->op.holds_clock = 1;
  return tk_op_await(L, t, &p->op, k_run);
}

/* ---- bindings: open and the process object ----------------------------- */

/* tether.process.open(argv [, opts]) -> process  -- a checkpoint */
static int l_process_open(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  spawn_req r;
  tt_task *t;
  tt_scope *s;
  lua_settop(L, 2);
  tk_spawn_parse(L, &r, 1, 2, 0, 0);
  t = tk_current(L, S, "tether.process.open");
  if ((s = ts_cancelled(t)) != NULL) return tk_raise_cancelled(L, S, s);
  tk_spawn(L, S, &r);
  return tk_yield_results(L, 1);  /* what was started stands */
}

static tt_proc *tk_proc_self(lua_State *L, const char *what) {
  tt_sched *S = TT_UPSCHED(L);
  return (tt_proc *)tk_io_check(L, S->io_mt[TT_MT_PROCESS], what);
}

static void ts_wait_cancel(tt_op *op) {
  ts_op_done(op, UV_ECANCELED);
}

static void ts_close_cancel(tt_op *op) {
  (void)op;                       /* p:close() waits shielded */
}

static int k_wait(lua_State *L, int status, lua_KContext ctx) {
  tt_io **slot = lua_touserdata(L, 1);
  tt_proc *p = (tt_proc *)*slot;
  (void)status; (void)ctx;
  tk_proc_sync(L, 1, p);
  tk_op_cancelled(L, &p->wop);
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "exit_code");
  lua_getfield(L, -2, "signal");
  return 2;
}

/* p:wait() -> exit_code, signal  -- a checkpoint; never kills */
static int l_proc_wait(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_proc *p = tk_proc_self(L, "p:wait");
  tt_task *t = tk_current(L, S, "p:wait");
  tt_scope *s = ts_cancelled(t);
  lua_settop(L, 1);
  if (s) return tk_raise_cancelled(L, S, s);
  if (p && !p->io.closed && p->spawned && !p->exited) {
    if (p->wop.task) {
      tk_new_ioerror(L, S, TT_CLS_BUSY, UV_EBUSY, "wait");
      lua_pushliteral(L, "another task is already waiting for this process");
      lua_setfield(L, -2, "message");
      return lua_error(L);
    }
    ts_op_init(&p->wop, &p->io, "process wait", ts_wait_cancel);
    p->wop.holds_clock = 1;
    return tk_op_await(L, t, &p->wop, k_wait);
  }
  tk_proc_sync(L, 1, p);
  lua_getiuservalue(L, 1, 1);
  if (lua_getfield(L, -1, "exited") == LUA_TNIL)
    return tk_raise_closed(L, S, "wait");
  lua_getfield(L, -2, "exit_code");
  lua_getfield(L, -3, "signal");
  return tk_yield_results(L, 2);
}

/* p:kill([sig]) -- default SIGTERM; nothing once the child was reaped */
static int l_proc_kill(lua_State *L) {
  tt_proc *p = tk_proc_self(L, "p:kill");
  int sig = lua_isnoneornil(L, 2) ? SIGTERM
                                  : tk_check_signal(L, 2, "p:kill");
  if (p && p->spawned && !p->exited) ts_proc_signal(p, sig);
  return 0;
}

static int k_close(lua_State *L, int status, lua_KContext ctx) {
  tt_io **slot = lua_touserdata(L, 1);
  tt_proc *p = (tt_proc *)*slot;
  (void)status; (void)ctx;
  tk_proc_sync(L, 1, p);
  ts_io_close(&p->io);
  return 0;
}

/*
** p:close() -- also __close: terminate a child that still runs (SIGTERM,
** SIGKILL after grace) and return once it was reaped; the wait is shielded.
** Where it cannot wait (outside a task), SIGKILL and let the run reap it.
*/
static int l_proc_close(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_proc *p = tk_proc_self(L, "p:close");
  lua_settop(L, 1);
  if (p == NULL || p->io.closed) return 0;
  tk_proc_sync(L, 1, p);
  if (p->spawned && !p->exited && !p->cop.task && S->running &&
      S->current && S->current->co == L && lua_isyieldable(L)) {
    ts_proc_terminate(p);
    ts_op_init(&p->cop, &p->io, "process close", ts_close_cancel);
    p->cop.holds_clock = 1;
    return tk_op_await(L, S->current, &p->cop, k_close);
  }
  ts_io_close(&p->io);
  return 0;
}

/* p.pid, p.stdin, p.stdout, p.stderr, p.exit_code, p.signal, p.argv, and
** the methods. */
static int l_proc_index(lua_State *L) {
  tt_io **slot = lua_touserdata(L, 1);
  lua_settop(L, 2);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) return 1;
  if (slot) tk_proc_sync(L, 1, (tt_proc *)*slot);
  lua_getiuservalue(L, 1, 1);
  if (!lua_istable(L, -1) || lua_type(L, 2) != LUA_TSTRING ||
      strcmp(lua_tostring(L, 2), "exited") == 0)
    return 0;
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int l_proc_tostring(lua_State *L) {
  tt_io **slot = lua_touserdata(L, 1);
  tt_proc *p = slot ? (tt_proc *)*slot : NULL;
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "argv");
  if (!lua_istable(L, -1)) lua_pushliteral(L, "?");
  else tk_push_cmdline(L, -1);
  if (p && p->spawned)
    lua_pushfstring(L, "tether.Process %d (%s)%s", p->pid, lua_tostring(L, -1),
                    p->exited ? " exited" : "");
  else
    lua_pushfstring(L, "tether.Process (%s) closed", lua_tostring(L, -1));
  return 1;
}

/* ---- bindings: environ and ProcessError ------------------------------- */

/* tether.process.environ() -> { NAME = value, ... } */
static int l_process_environ(lua_State *L) {
  char **e;
  lua_newtable(L);
  for (e = environ; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    if (eq == NULL || eq == *e) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

/* tostring(ProcessError) -> the command, the status, the last lines of
** stderr */
static int l_procerr_tostring(lua_State *L) {
  luaL_Buffer b;
  const char *err, *end, *from;
  size_t len;
  int lines = 0;
  lua_settop(L, 1);
  luaL_buffinit(L, &b);
  if (lua_getmetatable(L, 1)) {
    lua_getfield(L, -1, "name");
    lua_remove(L, -2);
  }
  if (!lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "ProcessError");
  }
  luaL_addvalue(&b);
  if (lua_getfield(L, 1, "message") != LUA_TNIL) {
    luaL_addstring(&b, ": ");
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
    luaL_addvalue(&b);
  } else {
    lua_pop(L, 1);
  }
  if (lua_getfield(L, 1, "stderr") == LUA_TSTRING) {
    err = lua_tolstring(L, -1, &len);
    end = err + len;
    while (end > err && (end[-1] == '\n' || end[-1] == '\r')) end--;
    from = end;
    while (from > err && lines < 5) {   /* the last 5 lines */
      from--;
      if (*from == '\n' && ++lines == 5) {
        from++;
        break;
      }
    }
    if (end > err) {
      const char *q;
      luaL_addstring(&b, "; last lines of stderr:");
      for (q = from; q < end;) {
        const char *nl = memchr(q, '\n', (size_t)(end - q));
        const char *le = nl ? nl : end;
        luaL_addstring(&b, "\n  | ");
        luaL_addlstring(&b, q, (size_t)(le - q));
        q = nl ? nl + 1 : end;
      }
    }
  }
  lua_pop(L, 1);
  luaL_pushresult(&b);
  return 1;
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg proc_methods[] = {
  {"wait", l_proc_wait},
  {"kill", l_proc_kill},
  {"close", l_proc_close},
  {NULL, NULL}
};

static const luaL_Reg process_funcs[] = {
  {"run", l_process_run},
  {"open", l_process_open},
  {"environ", l_process_environ},
  {NULL, NULL}
};

/*
** The first Ctrl-C was handled (sched.c): a second one must SIGKILL every
** child before the process ends (§5, §6.4).
*/
void ts_process_arm_second_sigint(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = tt_second_sigint;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

void tt_process_open(lua_State *L, tt_sched *S) {
  int mt;
  S->io_mt[TT_MT_PROCESS] = tk_io_newmeta(L, S, "tether.Process",
                                          proc_methods);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->io_mt[TT_MT_PROCESS]);
  mt = lua_gettop(L);
  lua_pushlightuserdata(L, S);
  lua_getfield(L, mt, "__index");           /* the methods */
  lua_pushcclosure(L, l_proc_index, 2);
  lua_setfield(L, mt, "__index");
  lua_pushcfunction(L, l_proc_tostring);
  lua_setfield(L, mt, "__tostring");
  lua_pop(L, 1);
  tk_push_class(L, S, TT_CLS_PROCESS);      /* before any subclass copies it */
  lua_pushcfunction(L, l_procerr_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, process_funcs, 1);
  lua_setfield(L, -2, "process");
}
