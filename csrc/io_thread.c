/* io_thread.c - tether.thread: Lua functions run in worker Lua states on libuv's thread pool; thread.limiter */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lualib.h"

#include "io.h"

/*
** Terms.  A worker (tt_worker) is a separate lua_State with the standard
** libraries, made on the loop thread when first needed and kept on the
** pool's idle list between works; all of them are closed when the main
** state closes.  A work (tt_work) is one call of thread.run: its function
** (a dump, cached per function here and per worker there), its arguments
** serialized into a buffer at the call, then its results (or its error)
** serialized into the same buffer by the worker.  Values never go from one
** state to the other directly: a buffer is what crosses threads, handed
** over by libuv's queue, so each state is only ever used by one thread at
** a time.
**
** The limiter (tt_limiter) bounds how many works hold a pool thread: a
** work takes a token before it is queued and gives it back when libuv is
** done with it.  Tasks waiting for a token form a FIFO; a released token
** goes straight to the first of them.
**
** A work, and the waiter of a limiter:acquire() that has to wait, start with
** a tt_io of their own (`hold`, never listed in S->ios) that their op points
** to: the task blocked on the op holds it until its continuation has run
** (io.h), and the binding's own hold is dropped by that continuation, so the
** memory goes when both are done.
*/

#define COPY_DEPTH 100          /* deepest table nesting that is copied */
#define FCACHE_MAX 256          /* functions a worker keeps loaded */
#define HOOK_COUNT 1000         /* instructions between interruption checks */

enum { W_OK, W_ERROR, W_INTERRUPTED, W_FAIL };         /* tt_work.status */
enum { V_NIL, V_FALSE, V_TRUE, V_INT, V_NUM, V_STR, V_TABLE, V_END };
enum { G_WAITING, G_HELD, G_RELEASED };                 /* tt_guard.state */

typedef struct tt_buf {
  char *p;
  size_t len, cap;
} tt_buf;

typedef struct tt_limiter tt_limiter;

/* A task waiting for a token. */
typedef struct tt_lwait {
  tt_op op;
  struct tt_lwait *next;
  tt_limiter *lim;
} tt_lwait;

struct tt_limiter {
  int total, borrowed;
  tt_lwait *head, *tail;    /* FIFO of waiters */
};

typedef struct tt_worker {
  lua_State *L;
  struct tt_worker *next;   /* idle list */
  int ncached;              /* functions in its cache */
  char *paths[2];           /* the package.path and cpath it was given */
} tt_worker;

/* The thread pool's state, one per Lua state: the userdata thread.limiter. */
typedef struct tt_tpool {
  tt_limiter lim;           /* first: a tt_limiter * is a tt_tpool * */
  tt_sched *S;
  tt_worker *idle;
  lua_Integer next_fid;     /* ids of dumped functions */
  int fcache_ref;           /* weak table: function -> { dump, id } */
  int pool_size;
} tt_tpool;

typedef struct tt_work {
  tt_io hold;               /* first: its memory (see Terms) */
  tt_lwait lw;              /* its wait: for a token, then for the work */
  uv_work_t work;
  tt_tpool *P;
  tt_worker *worker;
  const char *code;         /* the dump: a Lua string on the task's stack */
  size_t codelen;
  lua_Integer fid;
  tt_buf buf;               /* the arguments, then the results or error */
  char *tb;                 /* the worker's traceback (W_ERROR) */
  char *msg;                /* W_FAIL: what went wrong */
  int status;               /* W_* */
  int interrupt;            /* cancel = "interrupt" */
  int stop;                 /* atomic: interrupt now */
  uint8_t interrupted;      /* the hook raised (worker side) */
  uint8_t holds_token;
} tt_work;

/* The guard that lim:acquire() returns, and its wait when it must wait. */
typedef struct tt_guard {
  tt_tpool *P;
  int state;                /* G_* */
} tt_guard;

typedef struct tt_gwait {
  tt_io hold;               /* first: its memory (see Terms) */
  tt_lwait lw;
} tt_gwait;

static const tt_io_kind work_kind, gwait_kind;

static const char tpool_key = 0;   /* registry: the tt_tpool userdata */
static const char wcache_key = 0;  /* worker registry: id -> function */
static const char wtb_key = 0;     /* worker registry: last traceback */
static const char interrupt_key = 0; /* the error value of an interruption */

static uv_once_t key_once = UV_ONCE_INIT;
static uv_key_t work_key;           /* pool thread: the work it runs */
static int work_key_ok;

static void make_key(void) {
  work_key_ok = uv_key_create(&work_key) == 0;
}

/* ---- static helpers: buffers and copying (either thread) ---------------- */

static int buf_put(tt_buf *b, const void *p, size_t n) {
  if (b->cap - b->len < n) {
    size_t nc = b->cap ? b->cap : 128;
    char *np;
    while (nc - b->len < n) {
      if (nc > SIZE_MAX / 2) return -1;
      nc *= 2;
    }
    np = realloc(b->p, nc);
    if (np == NULL) return -1;
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  return 0;
}

static int buf_put1(tt_buf *b, int c) {
  char ch = (char)c;
  return buf_put(b, &ch, 1);
}

/* Serialization of one state's values, never raising: on failure `why`
** says what could not be copied and `where` the keys leading to it. */
typedef struct tt_ser {
  tt_buf *b;
  const void *path[COPY_DEPTH];   /* tables being copied, outermost first */
  int depth;
  char why[96];
  char where[160];
} tt_ser;

/* Prepend the key at `idx` to c->where (".name", "[1]", "[\"a b\"]"). */
static void ser_where(lua_State *L, int idx, tt_ser *c) {
  char k[64];
  size_t kl, wl = strlen(c->where);
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n, i;
      const char *s = lua_tolstring(L, idx, &n);
      int ident = n > 0 && n < 40 && !(s[0] >= '0' && s[0] <= '9');
      for (i = 0; i < n && ident; i++)
        ident = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                (s[i] >= '0' && s[i] <= '9') || s[i] == '_';
      if (ident) snprintf(k, sizeof k, ".%s", s);
      else snprintf(k, sizeof k, "[\"%.40s%s\"]", s, n > 40 ? "..." : "");
      break;
    }
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx))
        snprintf(k, sizeof k, "[" LUA_INTEGER_FMT "]", lua_tointeger(L, idx));
      else
        snprintf(k, sizeof k, "[%.14g]", (double)lua_tonumber(L, idx));
      break;
    case LUA_TBOOLEAN:
      snprintf(k, sizeof k, "[%s]", lua_toboolean(L, idx) ? "true" : "false");
      break;
    default:
      snprintf(k, sizeof k, "[(a %s key)]", luaL_typename(L, idx));
  }
  kl = strlen(k);
  if (kl + wl + 1 > sizeof c->where) return;    /* keep the innermost part */
  memmove(c->where + kl, c->where, wl + 1);
  memcpy(c->where, k, kl);
}

static int ser_value(lua_State *L, int idx, tt_ser *c);

static int ser_table(lua_State *L, int idx, tt_ser *c) {
  const void *p = lua_topointer(L, idx);
  uint32_t narr, nrec = 0;
  size_t at;
  int i;
  for (i = 0; i < c->depth; i++)
    if (c->path[i] == p) {
      snprintf(c->why, sizeof c->why, "a cycle (a table that contains itself)");
      return -1;
    }
  if (c->depth >= COPY_DEPTH) {
    snprintf(c->why, sizeof c->why, "tables nested more than %d deep",
             COPY_DEPTH);
    return -1;
  }
  if (!lua_checkstack(L, 4)) {
    snprintf(c->why, sizeof c->why, "a table (stack overflow)");
    return -1;
  }
  c->path[c->depth++] = p;
  narr = (uint32_t)lua_rawlen(L, idx);
  if (buf_put1(c->b, V_TABLE) || buf_put(c->b, &narr, 4)) goto nomem;
  at = c->b->len;
  if (buf_put(c->b, &nrec, 4)) goto nomem;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    if (ser_value(L, top - 1, c) || ser_value(L, top, c)) {
      ser_where(L, top - 1, c);
      lua_pop(L, 2);
      return -1;
    }
    lua_pop(L, 1);
    nrec++;
  }
  if (buf_put1(c->b, V_END)) goto nomem;
  memcpy(c->b->p + at, &nrec, 4);
  c->depth--;
  return 0;
nomem:
  snprintf(c->why, sizeof c->why, "a table (not enough memory)");
  return -1;
}

static int ser_value(lua_State *L, int idx, tt_ser *c) {
  int rc = 0;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL: rc = buf_put1(c->b, V_NIL); break;
    case LUA_TBOOLEAN:
      rc = buf_put1(c->b, lua_toboolean(L, idx) ? V_TRUE : V_FALSE);
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer v = lua_tointeger(L, idx);
        rc = buf_put1(c->b, V_INT) || buf_put(c->b, &v, sizeof v);
      } else {
        lua_Number v = lua_tonumber(L, idx);
        rc = buf_put1(c->b, V_NUM) || buf_put(c->b, &v, sizeof v);
      }
      break;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      rc = buf_put1(c->b, V_STR) || buf_put(c->b, &n, sizeof n) ||
           buf_put(c->b, s, n);
      break;
    }
    case LUA_TTABLE:
      return ser_table(L, idx, c);
    default:
      snprintf(c->why, sizeof c->why, "a %s value", luaL_typename(L, idx));
      return -1;
  }
  if (rc) snprintf(c->why, sizeof c->why, "a %s (not enough memory)",
                   luaL_typename(L, idx));
  return rc ? -1 : 0;
}

/* Push the value serialized at `p`; returns what follows it.  Raises on
** memory errors (of the state receiving it). */
static const char *deser(lua_State *L, const char *p) {
  switch (*p++) {
    case V_NIL: lua_pushnil(L); return p;
    case V_FALSE: lua_pushboolean(L, 0); return p;
    case V_TRUE: lua_pushboolean(L, 1); return p;
    case V_INT: {
      lua_Integer v;
      memcpy(&v, p, sizeof v);
      lua_pushinteger(L, v);
      return p + sizeof v;
    }
    case V_NUM: {
      lua_Number v;
      memcpy(&v, p, sizeof v);
      lua_pushnumber(L, v);
      return p + sizeof v;
    }
    case V_STR: {
      size_t n;
      memcpy(&n, p, sizeof n);
      lua_pushlstring(L, p + sizeof n, n);
      return p + sizeof n + n;
    }
    default: {                          /* V_TABLE */
      uint32_t narr, nrec;
      memcpy(&narr, p, 4);
      memcpy(&nrec, p + 4, 4);
      p += 8;
      luaL_checkstack(L, 4, "tables nested too deep");
      lua_createtable(L, (int)narr, (int)(nrec > narr ? nrec - narr : 0));
      while (*p != V_END) {
        p = deser(L, p);
        p = deser(L, p);
        lua_rawset(L, -3);
      }
      return p + 1;
    }
  }
}

/* Push every value of `b`; returns how many. */
static int deser_all(lua_State *L, const tt_buf *b) {
  const char *p = b->p, *end = b->p + b->len;
  int n = 0;
  while (p < end) {
    luaL_checkstack(L, 2, "too many values");
    p = deser(L, p);
    n++;
  }
  return n;
}

/* ---- pool side: running a work in its worker ---------------------------- */

/* The count hook of cancel = "interrupt": once the work is told to stop,
** raise now and at every later instruction, so that no pcall keeps it. */
static void w_hook(lua_State *L, lua_Debug *ar) {
  tt_work *w = work_key_ok ? uv_key_get(&work_key) : NULL;
  (void)ar;
  if (w && __atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
    w->interrupted = 1;
    lua_sethook(L, w_hook, LUA_MASKCOUNT, 1);
    lua_pushlightuserdata(L, (void *)&interrupt_key);
    lua_error(L);
  }
}

/* The worker's message handler: keep the error, record the traceback. */
static int w_msgh(lua_State *W) {
  if (lua_touserdata(W, 1) == &interrupt_key) return 1;
  luaL_traceback(W, W, NULL, 1);
  lua_rawsetp(W, LUA_REGISTRYINDEX, &wtb_key);
  return 1;
}

static int w_tostring(lua_State *W) {
  luaL_tolstring(W, 1, NULL);
  return 1;
}

/* The work failed in tether's part (not the user's function): `what`
** and `detail` say how. */
static void work_fail(tt_work *w, const char *what, const char *detail) {
  size_t n = strlen(what) + strlen(detail) + 1;
  free(w->msg);
  w->msg = malloc(n);
  if (w->msg) snprintf(w->msg, n, "%s%s", what, detail);
  w->status = W_FAIL;
}

/* The error at the top of W (the user's function failed): serialize it,
** or its tostring when it cannot be copied. */
static void w_error(lua_State *W, tt_work *w) {
  tt_ser c;
  memset(&c, 0, sizeof c);
  w->buf.len = 0;
  c.b = &w->buf;
  if (w->interrupted || lua_touserdata(W, -1) == &interrupt_key) {
    w->status = W_INTERRUPTED;
    return;
  }
  w->status = W_ERROR;
  if (lua_rawgetp(W, LUA_REGISTRYINDEX, &wtb_key) == LUA_TSTRING) {
    const char *tb = lua_tostring(W, -1);
    w->tb = malloc(strlen(tb) + 1);
    if (w->tb) strcpy(w->tb, tb);
  }
  lua_pop(W, 1);
  lua_pushnil(W);
  lua_rawsetp(W, LUA_REGISTRYINDEX, &wtb_key);
  if (ser_value(W, -1, &c) == 0) return;
  w->buf.len = 0;
  lua_pushcfunction(W, w_tostring);
  lua_pushvalue(W, -2);
  if (lua_pcall(W, 1, 1, 0) != LUA_OK || ser_value(W, -1, &c) != 0)
    work_fail(w, "the worker's error could not be copied", "");
}

/* Protected, in the worker: load the function, take the arguments, call
** it, serialize what it returned. */
static int w_run(lua_State *W) {
  tt_work *w = lua_touserdata(W, 1);
  int nargs, status, i;
  lua_settop(W, 1);
  lua_pushcfunction(W, w_msgh);                          /* 2 */
  lua_rawgetp(W, LUA_REGISTRYINDEX, &wcache_key);        /* 3: cache */
  if (lua_rawgeti(W, 3, w->fid) != LUA_TFUNCTION) {      /* 4: fn */
    lua_pop(W, 1);
    if (luaL_loadbufferx(W, w->code, w->codelen, "=thread.run", "b") != 0) {
      work_fail(w, "the function could not be loaded in the worker: ",
                lua_tostring(W, -1));
      return 0;
    }
    for (i = 1; ; i++) {
      const char *name = lua_getupvalue(W, 4, i);
      if (name == NULL) break;
      lua_pop(W, 1);
      if (strcmp(name, "_ENV") == 0) {
        lua_pushglobaltable(W);
        lua_setupvalue(W, 4, i);
      }
    }
    if (w->worker->ncached >= FCACHE_MAX) {              /* start afresh */
      lua_newtable(W);
      lua_pushvalue(W, -1);
      lua_rawsetp(W, LUA_REGISTRYINDEX, &wcache_key);
      lua_replace(W, 3);
      w->worker->ncached = 0;
    }
    lua_pushvalue(W, 4);
    lua_rawseti(W, 3, w->fid);
    w->worker->ncached++;
  }
  lua_remove(W, 3);                                      /* 3: fn */
  nargs = deser_all(W, &w->buf);
  w->buf.len = 0;
  if (w->interrupt) lua_sethook(W, w_hook, LUA_MASKCOUNT, HOOK_COUNT);
  status = lua_pcall(W, nargs, LUA_MULTRET, 2);
  lua_sethook(W, NULL, 0, 0);
  if (status != LUA_OK) {
    w_error(W, w);
    return 0;
  }
  {
    int top = lua_gettop(W);
    tt_ser c;
    memset(&c, 0, sizeof c);
    c.b = &w->buf;
    for (i = 3; i <= top; i++) {
      if (ser_value(W, i, &c) != 0) {
        char m[sizeof c.why + sizeof c.where + 48];
        snprintf(m, sizeof m, "result #%d cannot be copied: %s%s%s%s", i - 2,
                 c.why, c.where[0] ? " (at " : "", c.where,
                 c.where[0] ? ")" : "");
        work_fail(w, m, "");
        return 0;
      }
    }
  }
  w->status = W_OK;
  return 0;
}

/* The pool thread's part of a work. */
static void ts_thread_work(uv_work_t *req) {
  tt_work *w = req->data;
  lua_State *W = w->worker->L;
  if (work_key_ok) uv_key_set(&work_key, w);
  lua_settop(W, 0);
  lua_pushcfunction(W, w_run);
  lua_pushlightuserdata(W, w);
  if (lua_pcall(W, 1, 0, 0) != LUA_OK)
    work_fail(w, "the worker failed: ",
              lua_isstring(W, -1) ? lua_tostring(W, -1) : "not enough memory");
  lua_sethook(W, NULL, 0, 0);
  lua_settop(W, 0);
  if (work_key_ok) uv_key_set(&work_key, NULL);
}

/* ---- loop side: workers, the limiter, completion ------------------------ */

static int w_blocked(lua_State *W) {
  return luaL_error(W, "tether cannot be used inside a tether.thread.run "
                    "worker (it is another Lua state, on a pool thread): "
                    "return values to the calling task instead");
}

/* Protected, in a worker: set package.path and cpath (light userdata 1:
** two strings or NULLs). */
static int w_setpaths(lua_State *W) {
  const char **paths = lua_touserdata(W, 1);
  lua_getglobal(W, "package");
  if (!lua_istable(W, -1)) return 0;
  if (paths[0]) {
    lua_pushstring(W, paths[0]);
    lua_setfield(W, -2, "path");
  }
  if (paths[1]) {
    lua_pushstring(W, paths[1]);
    lua_setfield(W, -2, "cpath");
  }
  return 0;
}

/* Protected, in a new worker state: libraries, tether blocked, the
** function cache. */
static int w_init(lua_State *W) {
  luaL_openlibs(W);
  lua_getglobal(W, "package");
  lua_getfield(W, -1, "preload");
  lua_pushcfunction(W, w_blocked);
  lua_setfield(W, -2, "tether");
  lua_pushcfunction(W, w_blocked);
  lua_setfield(W, -2, "tether.core");
  lua_newtable(W);
  lua_rawsetp(W, LUA_REGISTRYINDEX, &wcache_key);
  return 0;
}

static void ts_worker_close(tt_worker *wk) {
  lua_close(wk->L);
  free(wk->paths[0]);
  free(wk->paths[1]);
  free(wk);
}

static int same_path(const char *a, const char *b) {
  return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/*
** Give worker `wk` the package paths `L` has now, if they changed since it
** got them.  0, or -1 when there is no memory.  Never raises.  NOTE: the
** strings are looked up by rawget of keys that exist (interned already),
** which allocates nothing.
*/
static int ts_worker_paths(tt_worker *wk, lua_State *L) {
  const char *paths[2] = {NULL, NULL};
  int i, rc = 0;
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE) {
    lua_pushliteral(L, "package");
    if (lua_rawget(L, -2) == LUA_TTABLE) {
      lua_pushliteral(L, "path");
      if (lua_rawget(L, -2) == LUA_TSTRING) paths[0] = lua_tostring(L, -1);
      lua_pushliteral(L, "cpath");
      if (lua_rawget(L, -3) == LUA_TSTRING) paths[1] = lua_tostring(L, -1);
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
  }
  if (!same_path(wk->paths[0], paths[0]) || !same_path(wk->paths[1], paths[1])) {
    lua_pushcfunction(wk->L, w_setpaths);
    lua_pushlightuserdata(wk->L, (void *)paths);
    if (lua_pcall(wk->L, 1, 0, 0) != LUA_OK) {
      lua_pop(wk->L, 1);
      rc = -1;
    }
    for (i = 0; i < 2 && rc == 0; i++) {
      if (same_path(wk->paths[i], paths[i])) continue;
      free(wk->paths[i]);
      wk->paths[i] = paths[i] ? malloc(strlen(paths[i]) + 1) : NULL;
      if (paths[i] && wk->paths[i]) strcpy(wk->paths[i], paths[i]);
    }
  }
  lua_pop(L, 1);                        /* the loaded table */
  return rc;
}

/* An idle worker, or a new one, with `L`'s package paths; NULL when there
** is no memory.  Never raises. */
static tt_worker *ts_worker_get(tt_tpool *P, lua_State *L) {
  tt_worker *wk = P->idle;
  if (wk) {
    P->idle = wk->next;
  } else {
    wk = calloc(1, sizeof *wk);
    if (wk == NULL) return NULL;
    wk->L = luaL_newstate();
    if (wk->L == NULL) {
      free(wk);
      return NULL;
    }
    lua_pushcfunction(wk->L, w_init);
    if (lua_pcall(wk->L, 0, 0, 0) != LUA_OK) {
      ts_worker_close(wk);
      return NULL;
    }
  }
  if (ts_worker_paths(wk, L) != 0) {
    wk->next = P->idle;
    P->idle = wk;
    return NULL;
  }
  return wk;
}

/* Hand a free token to the first waiters while there is room. */
static void ts_limiter_grant(tt_limiter *lim) {
  while (lim->head && lim->borrowed < lim->total) {
    tt_lwait *lw = lim->head;
    lim->head = lw->next;
    if (lim->head == NULL) lim->tail = NULL;
    lw->next = NULL;
    lim->borrowed++;
    ts_op_done(&lw->op, 0);
  }
}

/* A token comes back: the first waiter gets it. */
static void ts_limiter_release(tt_limiter *lim) {
  lim->borrowed--;
  ts_limiter_grant(lim);
}

/* Take a token at once if the queue is empty and one is free. */
static int ts_limiter_try(tt_limiter *lim) {
  if (lim->head || lim->borrowed >= lim->total) return 0;
  lim->borrowed++;
  return 1;
}

static void ts_limiter_enqueue(tt_limiter *lim, tt_lwait *lw) {
  lw->lim = lim;
  lw->next = NULL;
  if (lim->tail) lim->tail->next = lw;
  else lim->head = lw;
  lim->tail = lw;
}

/* A task waiting for a token was cancelled: it leaves the queue. */
static void ts_lwait_cancel(tt_op *op) {
  tt_lwait *lw = (tt_lwait *)op, **p = &lw->lim->head, *prev = NULL;
  while (*p && *p != lw) { prev = *p; p = &(*p)->next; }
  if (*p == NULL) return;
  *p = lw->next;
  if (lw->lim->tail == lw) lw->lim->tail = prev;
  lw->next = NULL;
  ts_op_done(op, UV_ECANCELED);
}

#define WORK_OF(p) ((tt_work *)((char *)(p) - offsetof(tt_work, lw.op)))

/* A task waiting for its work was cancelled: a queued work is taken back;
** a running one is told to stop (cancel = "interrupt") or waited for. */
static void ts_work_cancel(tt_op *op) {
  tt_work *w = WORK_OF(op);
  if (uv_cancel((uv_req_t *)&w->work) == 0) return;
  if (w->interrupt) __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
}

/* libuv is done with a work: its worker and token come back. */
static void ts_thread_after(uv_work_t *req, int status) {
  tt_work *w = req->data;
  tt_tpool *P = w->P;
  w->worker->next = P->idle;
  P->idle = w->worker;
  w->worker = NULL;
  w->holds_token = 0;
  ts_limiter_release(&P->lim);
  P->S->nhandles--;
  ts_op_done(&w->lw.op, status == UV_ECANCELED ? UV_ECANCELED : 0);
}

/* The binding's part is over: free what the work owns, and the work once
** its task let go of it too. */
static void ts_work_free(tt_work *w) {
  free(w->buf.p);
  free(w->tb);
  free(w->msg);
  w->buf.p = w->tb = w->msg = NULL;
  ts_io_unhold(&w->hold);
}

/* ---- task side ---------------------------------------------------------- */

static int k_thread_work(lua_State *L, int status, lua_KContext ctx);

/* Queue the work (its token taken) and wait for it. */
static int tk_work_submit(lua_State *L, tt_task *t, tt_work *w) {
  tt_sched *S = w->P->S;
  w->holds_token = 1;
  w->worker = ts_worker_get(w->P, L);
  if (w->worker == NULL) {
    ts_limiter_release(&w->P->lim);
    ts_work_free(w);
    return luaL_error(L, "not enough memory");
  }
  w->lw.op.cancel = ts_work_cancel;
  w->work.data = w;
  S->nhandles++;
  if (uv_queue_work(S->loop, &w->work, ts_thread_work, ts_thread_after) != 0) {
    w->worker->next = w->P->idle;       /* cannot happen: no callback */
    w->P->idle = w->worker;
    S->nhandles--;
    ts_limiter_release(&w->P->lim);
    ts_work_free(w);
    return luaL_error(L, "tether.thread.run: the work could not be queued");
  }
  return tk_op_await(L, t, &w->lw.op, k_thread_work);
}

/* Continuation of the wait for a token (`ctx`: the work's op). */
static int k_thread_token(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_work *w = WORK_OF(ctx);
  tt_scope *s;
  (void)status;
  if (w->lw.op.result != 0) {           /* taken out of the queue */
    ts_work_free(w);
    s = ts_cancelled(S->current);
    if (s) return tk_raise_cancelled(L, S, s);
    return luaL_error(L, "tether.thread.run: no token");
  }
  if ((s = ts_cancelled(S->current)) != NULL) {   /* nothing started yet */
    ts_limiter_release(&w->P->lim);
    ts_work_free(w);
    return tk_raise_cancelled(L, S, s);
  }
  return tk_work_submit(L, S->current, w);
}

/* Protected: push the values of work 1's buffer. */
static int l_work_values(lua_State *L) {
  tt_work *w = lua_touserdata(L, 1);
  lua_settop(L, 0);
  return deser_all(L, &w->buf);
}

/* Protected: work 1 failed with the error in its buffer: push the error,
** and record on the running task (2) the worker's traceback for it. */
static int l_work_error(lua_State *L) {
  tt_work *w = lua_touserdata(L, 1);
  deser_all(L, &w->buf);                /* 3: the error */
  lua_createtable(L, 3, 0);             /* 4: { error, traceback, spawn } */
  lua_pushvalue(L, 3);
  lua_rawseti(L, 4, 1);
  lua_pushfstring(L, "%s\n(in a tether.thread.run worker, called from)\n",
                  w->tb ? w->tb : "stack traceback: (none)");
  luaL_traceback(L, L, NULL, 1);
  lua_concat(L, 2);
  lua_rawseti(L, 4, 2);
  /* NOTE: the slot also keeps where the task was spawned (task.c) */
  if (lua_getiuservalue(L, 2, TT_UV_ERRTB) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 3);
    lua_remove(L, -2);
  }
  lua_rawseti(L, 4, 3);
  lua_setiuservalue(L, 2, TT_UV_ERRTB);
  lua_settop(L, 3);
  return 1;
}

/* Continuation of the wait for the work (`ctx`: its op). */
static int k_thread_work(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_work *w = WORK_OF(ctx);
  tt_scope *s;
  int base, nres;
  (void)status;
  if (w->lw.op.result == UV_ECANCELED || w->status == W_INTERRUPTED) {
    s = ts_cancelled(S->current);
    ts_work_free(w);
    if (s) return tk_raise_cancelled(L, S, s);
    return luaL_error(L, "tether.thread.run: the work was interrupted");
  }
  if (w->status == W_FAIL) {
    lua_pushfstring(L, "tether.thread.run: %s",
                    w->msg ? w->msg : "not enough memory");
    ts_work_free(w);
    return lua_error(L);
  }
  base = lua_gettop(L);
  if (w->status == W_OK) {
    lua_pushcfunction(L, l_work_values);
    lua_pushlightuserdata(L, w);
    status = lua_pcall(L, 1, LUA_MULTRET, 0);
    ts_work_free(w);
    if (status != LUA_OK) return lua_error(L);
    nres = lua_gettop(L) - base;
    return nres;
  }
  lua_pushcfunction(L, l_work_error);   /* W_ERROR */
  lua_pushlightuserdata(L, w);
  tk_push_task(L, S->current);
  status = lua_pcall(L, 2, 1, 0);
  ts_work_free(w);
  if (status == LUA_OK) tk_reraise_mark(L, S);
  return lua_error(L);
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  return buf_put(ud, p, sz) ? 1 : 0;
}

/*
** Push the dump of the Lua function at `fidx` and return its id, from the
** cache or made now.  The function may have no upvalue but _ENV.
*/
static lua_Integer tk_fn_code(lua_State *L, tt_tpool *P, int fidx, int arg) {
  lua_Integer id;
  int i;
  if (lua_type(L, fidx) != LUA_TFUNCTION || lua_iscfunction(L, fidx))
    tk_argerror(L, arg, "tether.thread.run", lua_pushfstring(L, "Lua function "
                "expected, got %s", lua_iscfunction(L, fidx) ? "C function"
                : luaL_typename(L, fidx)));
  lua_rawgeti(L, LUA_REGISTRYINDEX, P->fcache_ref);
  lua_pushvalue(L, fidx);
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 2);
    id = lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, -1, 1);
    lua_replace(L, -3);
    lua_pop(L, 1);
    return id;
  }
  lua_pop(L, 1);
  for (i = 1; ; i++) {
    const char *name = lua_getupvalue(L, fidx, i);
    if (name == NULL) break;
    lua_pop(L, 1);
    if (strcmp(name, "_ENV") != 0)
      tk_argerror(L, arg, "tether.thread.run", lua_pushfstring(L, "the function "
                  "uses the upvalue '%s'; a function run in a thread may use "
                  "only globals: pass values as arguments", name));
  }
  {
    tt_buf b = {NULL, 0, 0};
    lua_pushvalue(L, fidx);
    if (lua_dump(L, dump_writer, &b, 0) != 0 || b.p == NULL) {
      free(b.p);
      luaL_error(L, "tether.thread.run: the function could not be dumped");
    }
    lua_pop(L, 1);
    lua_pushlstring(L, b.p, b.len);     /* may raise: b is lost then */
    free(b.p);
  }
  id = ++P->next_fid;
  lua_createtable(L, 2, 0);             /* cache: fn -> { dump, id } */
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, id);
  lua_rawseti(L, -2, 2);
  lua_pushvalue(L, fidx);
  lua_insert(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);                    /* the cache */
  return id;
}

/* ---- bindings ----------------------------------------------------------- */

static tt_tpool *tk_tpool(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(2));
}

static const char *const run_opts[] = {"cancel", NULL};

/* tether.thread.run([opts,] fn, ...) -> fn's results, run in a worker */
static int l_thread_run(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_tpool *P = tk_tpool(L);
  int fidx = 1, interrupt = 0, i, top;
  lua_Integer fid;
  tt_task *t;
  tt_work *w;
  tt_scope *s;
  tt_ser c;
  if (lua_istable(L, 1)) {
    const char *mode;
    tk_check_opts(L, 1, "tether.thread.run", run_opts);
    mode = tk_opt_str(L, 1, "cancel", "tether.thread.run");
    if (mode && strcmp(mode, "interrupt") == 0) interrupt = 1;
    else if (mode && strcmp(mode, "wait") != 0)
      return tk_argerror(L, 1, "tether.thread.run", "option 'cancel': \"wait\" or "
                         "\"interrupt\" expected");
    fidx = 2;
  }
  t = tk_current(L, S, "tether.thread.run");
  top = lua_gettop(L);
  fid = tk_fn_code(L, P, fidx, fidx);                   /* top + 1: dump */
  w = calloc(1, sizeof *w);
  if (w == NULL) return luaL_error(L, "not enough memory");
  w->hold.S = S;
  w->hold.kind = &work_kind;
  w->hold.nhold = 1;                    /* the binding's, till k_thread_work */
  memset(&c, 0, sizeof c);
  c.b = &w->buf;
  for (i = fidx + 1; i <= top; i++) {
    if (ser_value(L, i, &c) != 0) {
      ts_work_free(w);
      lua_pushfstring(L, "cannot copy %s%s%s%s", c.why,
                      c.where[0] ? " (at " : "", c.where,
                      c.where[0] ? ")" : "");
      return tk_argerror(L, i, "tether.thread.run", lua_tostring(L, -1));
    }
  }
  if ((s = ts_cancelled(t)) != NULL) {
    ts_work_free(w);
    return tk_raise_cancelled(L, S, s);
  }
  w->P = P;
  w->code = lua_tolstring(L, top + 1, &w->codelen);
  w->fid = fid;
  w->interrupt = interrupt;
  ts_op_init(&w->lw.op, &w->hold, "thread.run", ts_lwait_cancel);
  w->lw.op.holds_clock = 1;
  if (ts_limiter_try(&P->lim)) return tk_work_submit(L, t, w);
  ts_limiter_enqueue(&P->lim, &w->lw);
  return tk_op_await(L, t, &w->lw.op, k_thread_token);
}

/* ---- bindings: thread.limiter ------------------------------------------- */

/* Push the table of borrowers (task -> guard, weak keys). */
static void push_borrowers(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tpool_key);
  lua_getiuservalue(L, -1, 1);
  lua_remove(L, -2);
}

static tt_guard *check_guard(lua_State *L, int idx) {
  tt_guard *g = luaL_testudata(L, idx, "tether.LimiterGuard");
  if (g == NULL) luaL_typeerror(L, idx, "tether.LimiterGuard");
  return g;
}

/* Give back the token `g` holds (nothing if it holds none). */
static void tk_guard_release(lua_State *L, tt_guard *g, int gidx) {
  if (g->state != G_HELD) return;
  g->state = G_RELEASED;
  ts_limiter_release(&g->P->lim);
  gidx = lua_absindex(L, gidx);
  push_borrowers(L);
  lua_getiuservalue(L, gidx, 1);        /* the owner */
  if (lua_rawget(L, -2) != LUA_TNIL && lua_rawequal(L, -1, gidx)) {
    lua_pop(L, 1);
    lua_getiuservalue(L, gidx, 1);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 2);
}

/* guard:release() -- also __close: releases only what it still holds */
static int l_guard_release(lua_State *L) {
  tt_guard *g = check_guard(L, 1);
  tk_guard_release(L, g, 1);
  return 0;
}

/* __gc of a guard: its owner is gone; a token it holds comes back. */
static int l_guard_gc(lua_State *L) {
  tt_guard *g = lua_touserdata(L, 1);
  if (g->state == G_HELD) {
    g->state = G_RELEASED;
    ts_limiter_release(&g->P->lim);
  }
  return 0;
}

static tt_tpool *check_limiter(lua_State *L, const char *what) {
  tt_tpool *P = tk_tpool(L);
  if (lua_touserdata(L, 1) != P)
    luaL_error(L, "bad self for '%s' (tether.thread.limiter expected, got "
               "%s); call it as a method", what, luaL_typename(L, 1));
  return P;
}

/* Record guard 2 as held by the running task. */
static void tk_guard_held(lua_State *L, tt_guard *g) {
  g->state = G_HELD;
  push_borrowers(L);
  lua_getiuservalue(L, 2, 1);
  lua_pushvalue(L, 2);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Continuation of an acquire that waited (`ctx`: its op). */
static int k_lim_acquire(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_guard *g = lua_touserdata(L, 2);
  tt_gwait *gw = (tt_gwait *)((char *)ctx - offsetof(tt_gwait, lw.op));
  intptr_t result = gw->lw.op.result;
  (void)status;
  ts_io_unhold(&gw->hold);
  if (result != 0) {                    /* cancelled in the queue */
    tt_scope *s = ts_cancelled(S->current);
    g->state = G_RELEASED;
    if (s) return tk_raise_cancelled(L, S, s);
    return luaL_error(L, "thread.limiter:acquire: no token");
  }
  tk_guard_held(L, g);
  lua_settop(L, 2);
  return 1;
}

/* thread.limiter:acquire() -> guard (for <close>); one token per task */
static int l_lim_acquire(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_tpool *P = check_limiter(L, "acquire");
  tt_task *t = tk_current(L, S, "thread.limiter:acquire");
  tt_scope *s;
  tt_guard *g;
  tt_gwait *gw;
  lua_settop(L, 1);
  push_borrowers(L);
  tk_push_task(L, t);
  if (lua_rawget(L, -2) != LUA_TNIL)
    return luaL_error(L, "thread.limiter:acquire: this task already holds "
                      "a token of it");
  lua_settop(L, 1);
  if ((s = ts_cancelled(t)) != NULL) return tk_raise_cancelled(L, S, s);
  g = lua_newuserdatauv(L, sizeof *g, 1);               /* 2 */
  memset(g, 0, sizeof *g);
  g->P = P;
  g->state = G_WAITING;
  luaL_setmetatable(L, "tether.LimiterGuard");
  tk_push_task(L, t);
  lua_setiuservalue(L, 2, 1);
  if (ts_limiter_try(&P->lim)) {
    tk_guard_held(L, g);
    return tk_yield_results(L, 1);
  }
  gw = calloc(1, sizeof *gw);
  if (gw == NULL) return luaL_error(L, "not enough memory");
  gw->hold.S = S;
  gw->hold.kind = &gwait_kind;
  gw->hold.nhold = 1;                   /* the binding's, till k_lim_acquire */
  ts_op_init(&gw->lw.op, &gw->hold, "acquire", ts_lwait_cancel);
  ts_limiter_enqueue(&P->lim, &gw->lw);
  return tk_op_await(L, t, &gw->lw.op, k_lim_acquire);
}

/* thread.limiter:release() -- the token the calling task holds */
static int l_lim_release(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *t;
  check_limiter(L, "release");
  t = S->current;
  lua_settop(L, 1);
  push_borrowers(L);
  if (t) tk_push_task(L, t);
  else lua_pushnil(L);
  if (t == NULL || lua_rawget(L, -2) == LUA_TNIL)
    return luaL_error(L, "thread.limiter:release: the calling task holds "
                      "no token of it");
  tk_guard_release(L, check_guard(L, -1), -1);
  return 0;
}

/* thread.limiter.total / .borrowed / .available, and the methods */
static int l_lim_index(lua_State *L) {
  tt_tpool *P = tk_tpool(L);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "total") == 0) lua_pushinteger(L, P->lim.total);
  else if (k && strcmp(k, "borrowed") == 0) lua_pushinteger(L, P->lim.borrowed);
  else if (k && strcmp(k, "available") == 0)
    lua_pushinteger(L, P->lim.total > P->lim.borrowed
                           ? P->lim.total - P->lim.borrowed : 0);
  else {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(3));
  }
  return 1;
}

/* thread.limiter.total = n  (an integer >= 1; waiters get what is freed) */
static int l_lim_newindex(lua_State *L) {
  tt_tpool *P = tk_tpool(L);
  const char *k = lua_tostring(L, 2);
  lua_Integer n;
  int isint;
  if (k == NULL || strcmp(k, "total") != 0)
    return luaL_error(L, "thread.limiter: only 'total' can be set");
  n = lua_tointegerx(L, 3, &isint);
  if (!isint || lua_type(L, 3) != LUA_TNUMBER || n < 1 || n > 1 << 20)
    return luaL_error(L, "thread.limiter.total: an integer >= 1 expected, "
                      "got %s", luaL_tolstring(L, 3, NULL));
  P->lim.total = (int)n;
  ts_limiter_grant(&P->lim);
  return 0;
}

static int l_lim_tostring(lua_State *L) {
  tt_tpool *P = tk_tpool(L);
  lua_pushfstring(L, "tether.thread.limiter (total %d, borrowed %d)",
                  P->lim.total, P->lim.borrowed);
  return 1;
}

/* __gc of the pool (the main state closes): close the idle workers. */
static int l_tpool_gc(lua_State *L) {
  tt_tpool *P = lua_touserdata(L, 1);
  while (P->idle) {
    tt_worker *wk = P->idle;
    P->idle = wk->next;
    ts_worker_close(wk);
  }
  return 0;
}

/* What a task blocked in thread.run or acquire waits on, for dump. */
static void describe_work(lua_State *L, tt_io *io) {
  tt_work *w = (tt_work *)io;
  if (w->holds_token) lua_pushliteral(L, "a worker thread");
  else lua_pushliteral(L, "tether.thread.limiter");
}

static const tt_io_kind work_kind = {"thread.run", NULL, describe_work};
static const tt_io_kind gwait_kind = {"tether.thread.limiter", NULL, NULL};

/* ---- tables and open ---------------------------------------------------- */

static const luaL_Reg lim_methods[] = {
  {"acquire", l_lim_acquire},
  {"release", l_lim_release},
  {NULL, NULL}
};

static const luaL_Reg lim_meta[] = {
  {"__index", l_lim_index},
  {"__newindex", l_lim_newindex},
  {"__tostring", l_lim_tostring},
  {NULL, NULL}
};

static const luaL_Reg guard_meta[] = {
  {"__close", l_guard_release},
  {"__gc", l_guard_gc},
  {NULL, NULL}
};

/* The pool size libuv will use: UV_THREADPOOL_SIZE as libuv reads it. */
static int pool_size(void) {
  const char *v = getenv("UV_THREADPOOL_SIZE");
  int n = v ? atoi(v) : 4;
  if (n <= 0) n = 1;
  if (n > 1024) n = 1024;
  return n;
}

/* Register tether.thread into the module table on top of the stack. */
void tt_thread_open(lua_State *L, tt_sched *S) {
  tt_tpool *P;
  uv_once(&key_once, make_key);
  if (work_key_ok && uv_key_get(&work_key) != NULL) {
    S->loop = NULL;     /* this state's scheduler must never close a loop */
    luaL_error(L, "tether cannot be used inside a tether.thread.run worker "
               "(it is another Lua state, on a pool thread)");
  }
  luaL_newmetatable(L, "tether.LimiterGuard");
  lua_pushlightuserdata(L, S);
  luaL_setfuncs(L, guard_meta, 1);
  lua_newtable(L);
  lua_pushcfunction(L, l_guard_release);
  lua_setfield(L, -2, "release");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lua_newtable(L);                                      /* thread */
  P = lua_newuserdatauv(L, sizeof *P, 1);               /* the limiter */
  memset(P, 0, sizeof *P);
  P->S = S;
  P->pool_size = pool_size();
  P->lim.total = P->pool_size > 1 ? P->pool_size - 1 : 1;
  lua_newtable(L);                                      /* borrowers */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setiuservalue(L, -2, 1);
  lua_newtable(L);                                      /* fn -> dump */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  P->fcache_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);                                      /* methods */
  lua_pushlightuserdata(L, S);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, lim_methods, 2);
  lua_createtable(L, 0, 6);                             /* its metatable */
  lua_pushlightuserdata(L, S);
  lua_pushvalue(L, -4);
  lua_pushvalue(L, -4);
  luaL_setfuncs(L, lim_meta, 3);
  lua_remove(L, -2);                                    /* the methods */
  lua_pushcfunction(L, l_tpool_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &tpool_key);
  lua_pushlightuserdata(L, S);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_thread_run, 2);
  lua_setfield(L, -3, "run");
  lua_setfield(L, -2, "limiter");
  lua_pushinteger(L, P->pool_size);
  lua_setfield(L, -2, "pool_size");
  lua_setfield(L, -2, "thread");
}
