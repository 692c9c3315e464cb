/* io.h - the operation mechanism that every I/O family (csrc/io_*.c) stands on */
#ifndef TETHER_IO_H
#define TETHER_IO_H

#include "internal.h"

/*
** Terms (doc/internals.md, "I/O"):
**
** An I/O object (tt_io) is the C side of a Lua object that owns libuv
** handles or descriptors: a stream, a listener, a UDP socket, a file, a
** process, a signal receiver.  Its memory is malloc'd, not a userdata,
** because libuv keeps using it after Lua is done with it (uv_close
** completes in a later callback).  The Lua userdata holds only a pointer
** to it; the object points back, and clears that pointer when it is freed.
** The scheduler lists every open object (S->ios), so tether.run closes
** whatever is still open when it ends.
**
** An operation (tt_op) is one wait of a task on libuv: the awaiting task,
** the result, and the kind's cancel action.  A task waits with
** tk_op_await; the libuv callback stores the result and wakes the task with
** ts_op_done (never resumes, never raises, never allocates Lua values).  A
** cancellation of the task calls the op's cancel action instead of waking
** the task: the action takes the operation back (uv_cancel, uv_close,
** uv_read_stop, a kill) and the task wakes only when the callback has run,
** so Cancelled is raised after libuv is done with the operation.
*/

typedef struct tt_io tt_io;
typedef struct tt_op tt_op;
typedef struct tt_io_kind tt_io_kind;

/* What every kind of I/O object provides. */
struct tt_io_kind {
  const char *name;                 /* "tcp", "pipe", "file": dump, errors */
  /* ts_: begin closing (uv_close of the handles...); called once.  The
     kind calls ts_io_release when libuv no longer uses the object. */
  void (*close)(tt_io *io);
  /* tk_: push a short description ("tcp 127.0.0.1:5432"), for dump. */
  void (*describe)(lua_State *L, tt_io *io);
};

struct tt_io {
  TT_LINK(tt_io) link;      /* in S->ios while open (not yet closed) */
  tt_sched *S;
  const tt_io_kind *kind;
  tt_io **ud;               /* the userdata's slot pointing here, or NULL */
  tt_task *root;            /* the root whose task opened it, or NULL */
  int nhold;                /* reasons libuv still uses the memory: handles
                               not yet closed, requests in flight */
  uint8_t closed;           /* close() was called, or the run closed it */
};

/* An operation a task waits on.  Embedded in an I/O object (the waiting
** task then holds the object until its continuation has run), or in a
** request struct that must stay valid until that continuation has run. */
typedef void (*tt_cancel_fn)(tt_op *op);
struct tt_op {
  tt_task *task;            /* the task blocked on it; NULL when none */
  tt_cancel_fn cancel;      /* ts_: take the operation back; the op
                               completes later through ts_op_done (or at
                               once, from inside the action) */
  tt_io *io;                /* what it works on, for dump (may be NULL) */
  const char *what;         /* "read", "accept": for dump */
  intptr_t result;          /* set by ts_op_done: >= 0 or a libuv error */
  uint8_t cancelling;       /* the cancel action was called */
  uint8_t done;             /* ts_op_done was called since tk_op_await */
  uint8_t holds_clock;      /* a virtual clock waits for it (§8) */
};

/*
** A byte stream (io_stream.c) over a uv_stream_t: TCP and local-socket
** connections, process pipes, the standard streams.  A family makes one
** with tk_stream_new, initialises `h` (uv_tcp_init, uv_pipe_init...), then
** calls ts_stream_opened; its kind's close is usually ts_stream_close.
*/
typedef struct tt_stream {
  tt_io io;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_tty_t tty;
  } h;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  tt_op rop, wop;           /* the pending read, the pending write/shutdown */
  char *buf;                /* unread bytes: buf[start, end) */
  size_t start, end, cap;
  size_t scan;              /* read_line/until: searched up to here */
  size_t rlimit;            /* stop reading from the kernel above this */
  int rmode;                /* what the pending read waits for (RM_*) */
  size_t rneed;             /* RM_EXACT: bytes; RM_LINE/UNTIL/ALL: max */
  const char *sep;          /* RM_UNTIL: the separator (on the task's stack) */
  size_t seplen;
  int rerr;                 /* a read error, delivered after the bytes */
  uint8_t eof;
  uint8_t reading;          /* uv_read_start is active */
  uint8_t opened;           /* h was initialised (uv_close is owed) */
  uint8_t wshut;            /* close_write was called */
  uint8_t is_std;           /* a standard stream (TT_STD_*): see io_stdio.c */
  int fd;                   /* TT_STD_FILE: the descriptor read and written */
  void *data;               /* the family's own */
} tt_stream;

/* Standard streams: polled by libuv, or (a regular file, /dev/null, which
** epoll cannot watch) read and written with plain read() and write(). */
enum { TT_STD_NO, TT_STD_POLL, TT_STD_FILE };

/* io_stream.c */
tt_stream *tk_stream_new(lua_State *L, tt_sched *S, const tt_io_kind *kind);
void ts_stream_opened(tt_stream *s);
void ts_stream_close(tt_io *io);
tt_stream *tk_stream_check(lua_State *L, const char *what,
                           const char *op);
void tk_stream_add_methods(lua_State *L, tt_sched *S, const luaL_Reg *m);
void tt_stream_open(lua_State *L, tt_sched *S);

/* io_op.c: objects */
void *tk_io_new(lua_State *L, tt_sched *S, size_t size,
                const tt_io_kind *kind, int mtref);
tt_io *tk_io_check(lua_State *L, int mtref, const char *what);
tt_io *tk_io_checkopen(lua_State *L, int mtref, const char *what,
                       const char *op);
void ts_io_close(tt_io *io);
void ts_io_hold(tt_io *io);
void ts_io_release(tt_io *io);
void ts_io_unhold(tt_io *io);
int l_io_close(lua_State *L);
void ts_io_close_all(tt_sched *S);
void ts_io_close_root(tt_sched *S, tt_task *root);
void tk_io_push_description(lua_State *L, tt_io *io);
int tk_io_newmeta(lua_State *L, tt_sched *S, const char *tname,
                  const luaL_Reg *m);

/* io_op.c: operations */
void ts_op_init(tt_op *op, tt_io *io, const char *what, tt_cancel_fn cancel);
int tk_op_await(lua_State *L, tt_task *t, tt_op *op, lua_KFunction k);
void ts_op_done(tt_op *op, intptr_t result);
void ts_op_cancel(tt_op *op);
void ts_op_release(tt_op *op);
int tk_op_cancelled(lua_State *L, tt_op *op);


/* io_op.c: errors */
int tk_raise_ioerror(lua_State *L, tt_sched *S, int err, const char *op,
                     tt_io *io);
int tk_raise_closed(lua_State *L, tt_sched *S, const char *op);
int ts_errcls(int err);

/* io_process.c */
void ts_process_arm_second_sigint(void);
void tt_process_open(lua_State *L, tt_sched *S);

/* io_signal.c */
const char *ts_signal_name(int sig);
int ts_signal_number(const char *name);
int ts_signal_receivers(int signum);
int tk_check_signal(lua_State *L, int arg, const char *fname);
void tt_signal_open(lua_State *L, tt_sched *S);

/* io_stdio.c */
void ts_stdio_after_spawn(tt_sched *S);
void tt_stdio_open(lua_State *L, tt_sched *S);

/* io_op.c: SIGPIPE is ignored while a run is active */
void ts_io_run_begin(tt_sched *S);
void ts_io_run_end(tt_sched *S);
void tt_io_open(lua_State *L, tt_sched *S);

/*
** Networking (io_dns.c, io_listen.c, io_tcp.c, io_unix.c, io_udp.c).
**
** A listener (io_listen.c) is shared by TCP and local sockets: a uv_tcp_t
** or uv_pipe_t in listen mode, the pending accept, and how to make a
** stream of an accepted connection.  libuv takes one connection off the
** kernel's queue and then waits for uv_accept (`pending`), so an accept
** that is cancelled before it took it loses nothing.
*/
typedef struct tt_listener {
  tt_io io;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  tt_op aop;                /* the pending accept */
  const tt_io_kind *skind;  /* the kind of the streams it accepts */
  int (*init)(uv_loop_t *loop, tt_stream *s);   /* ... and their handle */
  int err;                  /* an accept error not yet reported */
  int port;                 /* TCP: the bound port */
  char host[64];            /* TCP: the bound address */
  char *path;               /* local: the socket file (removed at close) */
  unsigned long dev, ino;   /* ... and its identity, checked before removing */
  uint8_t pending;          /* a connection waits for uv_accept */
  uint8_t opened;           /* h was initialised (uv_close is owed) */
} tt_listener;

/* A socket address of either IP family. */
typedef union tt_sockaddr {
  struct sockaddr sa;
  struct sockaddr_in in;
  struct sockaddr_in6 in6;
  struct sockaddr_storage ss;
} tt_sockaddr;

/* io_dns.c */
int ts_ip_parse(const char *host, int port, tt_sockaddr *addr);
int ts_ip_name(const struct sockaddr *sa, char *host, size_t size, int *port);
int tk_push_sockaddr(lua_State *L, const struct sockaddr *sa);
int tk_check_port(lua_State *L, int arg, const char *fname, int min);
int tk_lookup(lua_State *L, tt_sched *S, tt_task *t, const char *host,
              int socktype, int flags, lua_KFunction k);
struct addrinfo *tk_lookup_result(lua_State *L, int boxidx, const char *host);
void tt_dns_open(lua_State *L, tt_sched *S);

/* io_listen.c */
tt_listener *tk_listener_new(lua_State *L, tt_sched *S,
                             const tt_io_kind *kind);
int tk_listener_start(lua_State *L, tt_listener *l, int backlog);
void ts_listener_close(tt_io *io);
int tk_serve(lua_State *L, const char *fname, lua_CFunction listen);
void tt_listen_open(lua_State *L, tt_sched *S);

/* io_tcp.c, io_unix.c, io_udp.c */
void tt_tcp_open(lua_State *L, tt_sched *S);
void tt_unix_open(lua_State *L, tt_sched *S);
void tt_udp_open(lua_State *L, tt_sched *S);

/* io_fs.c: tether.fs; io_thread.c: tether.thread */
void tt_fs_open(lua_State *L, tt_sched *S);
void tt_thread_open(lua_State *L, tt_sched *S);

#endif
