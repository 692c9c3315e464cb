/* io_signal.c - signal receivers (tether.signal.open) and the signal names shared with processes */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

/* ---- types ------------------------------------------------------------ */

typedef struct tt_sigrx tt_sigrx;

/* One signal of a receiver: its libuv handle. */
typedef struct tt_sigent {
  uv_signal_t h;
  tt_sigrx *rx;
  int signum;
  uint8_t pending;          /* arrived, not yet received (coalesced) */
  uint8_t started;          /* watched: counted in sig_count */
} tt_sigent;

struct tt_sigrx {
  tt_io io;
  tt_op op;                 /* the pending rx:wait() */
  int nsig;
  int nq;                   /* queue: the pending signals in arrival order */
  int *queue;               /* nsig entries, indices into ent */
  tt_sigent *ent;           /* nsig entries */
};

/* ---- static helpers --------------------------------------------------- */

static const struct { const char *name; int num; } sig_names[] = {
  {"SIGHUP", SIGHUP}, {"SIGINT", SIGINT}, {"SIGQUIT", SIGQUIT},
  {"SIGILL", SIGILL}, {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT},
  {"SIGBUS", SIGBUS}, {"SIGFPE", SIGFPE}, {"SIGKILL", SIGKILL},
  {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
  {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},
  {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP},
  {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN}, {"SIGTTOU", SIGTTOU},
  {"SIGURG", SIGURG}, {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},
  {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF},
#ifdef SIGWINCH
  {"SIGWINCH", SIGWINCH},
#endif
#ifdef SIGIO
  {"SIGIO", SIGIO},
#endif
#ifdef SIGPWR
  {"SIGPWR", SIGPWR},
#endif
  {"SIGSYS", SIGSYS},
  {NULL, 0}
};

/*
** Per signal number, process-wide (signals are): how many receivers watch
** it, and its disposition before the first of them, restored after the
** last one closed.  NOTE: libuv sets SIG_DFL when its last handle of a
** signal stops, which would turn an ignored SIGHUP (nohup) into a fatal one.
*/
#define TT_NSIG 65
static int sig_count[TT_NSIG];
static struct sigaction sig_saved[TT_NSIG];

static void ts_sigent_closed(uv_handle_t *h) {
  tt_sigent *e = h->data;
  ts_io_release(&e->rx->io);
}

/* A signal arrived: queue it once, wake the waiting task. */
static void ts_on_signal(uv_signal_t *h, int signum) {
  tt_sigent *e = h->data;
  tt_sigrx *rx = e->rx;
  (void)signum;
  if (rx->io.closed || e->pending) return;
  e->pending = 1;
  rx->queue[rx->nq++] = (int)(e - rx->ent);
  if (rx->op.task) ts_op_done(&rx->op, 0);
}

/* Stop watching: close the handles, restore dispositions; wake a waiter. */
static void ts_sigrx_close(tt_io *io) {
  tt_sigrx *rx = (tt_sigrx *)io;
  int i;
  for (i = 0; i < rx->nsig; i++) {
    tt_sigent *e = &rx->ent[i];
    if (!e->started) continue;
    e->started = 0;
    uv_close((uv_handle_t *)&e->h, ts_sigent_closed);  /* stops it now */
    if (--sig_count[e->signum] == 0)
      sigaction(e->signum, &sig_saved[e->signum], NULL);
  }
  rx->nq = 0;
  if (rx->op.task) ts_op_done(&rx->op, UV_EBADF);
}

static void ts_sigrx_describe(lua_State *L, tt_io *io) {
  tt_sigrx *rx = (tt_sigrx *)io;
  luaL_Buffer b;
  int i;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "signal receiver");
  for (i = 0; i < rx->nsig; i++) {
    luaL_addchar(&b, ' ');
    luaL_addstring(&b, ts_signal_name(rx->ent[i].signum));
  }
  luaL_pushresult(&b);
}

static const tt_io_kind sigrx_kind = {
  "signal", ts_sigrx_close, ts_sigrx_describe
};

static void ts_sigwait_cancel(tt_op *op) {
  ts_op_done(op, UV_ECANCELED);
}

/* Pop the first pending signal and push its name. */
static int tk_sigrx_pop(lua_State *L, tt_sigrx *rx) {
  tt_sigent *e = &rx->ent[rx->queue[0]];
  rx->nq--;
  memmove(rx->queue, rx->queue + 1, (size_t)rx->nq * sizeof(int));
  e->pending = 0;
  lua_pushstring(L, ts_signal_name(e->signum));
  return 1;
}

/* ---- core functions --------------------------------------------------- */

/* The name of signal `sig` ("SIGTERM"), or NULL when it has none here. */
const char *ts_signal_name(int sig) {
  int i;
  for (i = 0; sig_names[i].name; i++)
    if (sig_names[i].num == sig) return sig_names[i].name;
  return NULL;
}

/* The number of the signal called `name` ("SIGTERM" or "TERM"), or 0. */
int ts_signal_number(const char *name) {
  int i;
  for (i = 0; sig_names[i].name; i++)
    if (strcmp(sig_names[i].name, name) == 0 ||
        strcmp(sig_names[i].name + 3, name) == 0)
      return sig_names[i].num;
  return 0;
}

/* How many open receivers watch `signum` (the run's SIGINT handling
** steps aside while one watches SIGINT). */
int ts_signal_receivers(int signum) {
  return signum > 0 && signum < TT_NSIG ? sig_count[signum] : 0;
}

/*
** The signal named or numbered by argument `arg` of `fname`: a name
** ("SIGHUP", "HUP") or a number.  A clear error otherwise.
*/
int tk_check_signal(lua_State *L, int arg, const char *fname) {
  int sig = 0;
  if (lua_type(L, arg) == LUA_TNUMBER) {
    lua_Integer n = lua_tointeger(L, arg);
    if (lua_isinteger(L, arg) && n > 0 && n < TT_NSIG) sig = (int)n;
  } else if (lua_type(L, arg) == LUA_TSTRING) {
    sig = ts_signal_number(lua_tostring(L, arg));
  } else {
    lua_pushfstring(L, "signal name expected, got %s", luaL_typename(L, arg));
    return tk_argerror(L, arg, fname, lua_tostring(L, -1));
  }
  if (sig == 0) {
    lua_pushfstring(L, "unknown signal %s", luaL_tolstring(L, arg, NULL));
    return tk_argerror(L, arg, fname, lua_tostring(L, -1));
  }
  return sig;
}

/* ---- bindings --------------------------------------------------------- */

/* tether.signal.open(sig, ...) -> receiver */
static int l_signal_open(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  const char *fname = "tether.signal.open";
  int n = lua_gettop(L), i, j, nsig = 0, sigs[TT_NSIG];
  tt_sigrx *rx;
  size_t size;
  if (n == 0) return tk_argerror(L, 1, fname, "signal name expected");
  for (i = 1; i <= n; i++) {
    int sig = tk_check_signal(L, i, fname);
    if (sig == SIGKILL || sig == SIGSTOP) {
      lua_pushfstring(L, "%s cannot be caught", ts_signal_name(sig));
      return tk_argerror(L, i, fname, lua_tostring(L, -1));
    }
    for (j = 0; j < nsig && sigs[j] != sig; j++) {}
    if (j == nsig) sigs[nsig++] = sig;  /* a signal named twice: once */
  }
  if (!S->running)
    return luaL_error(L, "%s: called outside tether.run", fname);
  size = sizeof(tt_sigrx) + (size_t)nsig * (sizeof(tt_sigent) + sizeof(int));
  rx = tk_io_new(L, S, size, &sigrx_kind, S->io_mt[TT_MT_SIGNAL]);
  rx->ent = (tt_sigent *)(rx + 1);
  rx->queue = (int *)(rx->ent + nsig);
  rx->nsig = nsig;
  ts_op_init(&rx->op, &rx->io, "signal wait", ts_sigwait_cancel);
  for (i = 0; i < nsig; i++) {
    tt_sigent *e = &rx->ent[i];
    int sig = sigs[i], r;
    e->rx = rx;
    e->signum = sig;
    if (sig_count[sig] == 0) sigaction(sig, NULL, &sig_saved[sig]);
    uv_signal_init(S->loop, &e->h);
    ts_io_hold(&rx->io);
    e->h.data = e;
    r = uv_signal_start(&e->h, ts_on_signal, sig);
    sig_count[sig]++;
    e->started = 1;
    if (r < 0) {
      ts_io_close(&rx->io);
      return tk_raise_ioerror(L, S, r, "signal", NULL);
    }
  }
  return 1;
}

static int l_sigrx_wait(lua_State *L);

static int k_sigwait(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_io **ud = lua_touserdata(L, 1);
  tt_sigrx *rx = (tt_sigrx *)*ud;
  (void)status; (void)ctx;
  if (rx == NULL || rx->io.closed) return tk_raise_closed(L, S, "signal wait");
  tk_op_cancelled(L, &rx->op);
  if (rx->nq == 0) return l_sigrx_wait(L);  /* taken back, yet not cancelled */
  return tk_sigrx_pop(L, rx);
}

/* rx:wait() -> the name of the next signal */
static int l_sigrx_wait(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_sigrx *rx = (tt_sigrx *)tk_io_checkopen(L, S->io_mt[TT_MT_SIGNAL],
                                             "rx:wait", "signal wait");
  tt_task *t = tk_current(L, S, "rx:wait");
  tt_scope *s = ts_cancelled(t);
  lua_settop(L, 1);
  if (s) return tk_raise_cancelled(L, S, s);
  if (rx->op.task) {
    tk_new_ioerror(L, S, TT_CLS_BUSY, UV_EBUSY, "signal wait");
    return lua_error(L);
  }
  if (rx->nq > 0) {
    tk_sigrx_pop(L, rx);
    return tk_yield_results(L, 1);
  }
  return tk_op_await(L, t, &rx->op, k_sigwait);
}

/* rx:iter() -> an iterator of the signals, for a generic for: rx:wait
** itself, with rx as the loop's state. */
static int l_sigrx_iter(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tk_io_check(L, S->io_mt[TT_MT_SIGNAL], "rx:iter");
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_sigrx_wait, 1);
  lua_pushvalue(L, 1);
  return 2;
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg sigrx_methods[] = {
  {"wait", l_sigrx_wait},
  {"iter", l_sigrx_iter},
  {NULL, NULL}
};

static const luaL_Reg signal_funcs[] = {
  {"open", l_signal_open},
  {NULL, NULL}
};

void tt_signal_open(lua_State *L, tt_sched *S) {
  S->io_mt[TT_MT_SIGNAL] = tk_io_newmeta(L, S, "tether.SignalReceiver",
                                         sigrx_methods);
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, signal_funcs, 1);
  lua_setfield(L, -2, "signal");
}
