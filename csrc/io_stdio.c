/* io_stdio.c - the standard streams tether.stdin, tether.stdout, tether.stderr */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

/*
** NOTE: how a standard stream leaves descriptor 0, 1 or 2 as it was.
** - tether never closes 0, 1 or 2: libuv gets a descriptor of its own.
** - O_NONBLOCK belongs to the open file description, which a dup shares
**   with the parent shell, with Lua's io library and with every child given
**   that descriptor.  So a pipe is opened again through /proc/self/fd/N (a
**   new description of the same pipe), and libuv reopens a terminal itself
**   (uv_tty_init); their flags are then tether's alone.  Where that cannot
**   be done (a socket), the stream uses a dup: its flags are saved and
**   restored when the stream closes (the run's end closes it on every exit
**   path), and set again after a spawn, since a child that inherits the
**   descriptor clears O_NONBLOCK on it (libuv's child setup does).
** - A regular file or /dev/null cannot be watched by epoll: the stream
**   reads and writes it with plain read/write (TT_STD_FILE in io_stream.c).
*/

/* ---- types ------------------------------------------------------------ */

typedef struct std_slot {
  tt_stream *s;             /* the open stream, or NULL */
  int saved;                /* F_GETFL of the descriptor when opened */
  uint8_t shared;           /* the stream's descriptor is a dup (flags shared) */
} std_slot;

static std_slot slots[3];   /* descriptors are process-wide */
static const char stdio_key = 0;  /* registry: { [0..2] = userdata } */
static const char *const std_names[] = { "stdin", "stdout", "stderr" };

/* ---- static helpers --------------------------------------------------- */

static int slot_of(tt_stream *s) {
  int i;
  for (i = 0; i < 3; i++)
    if (slots[i].s == s) return i;
  return -1;
}

/* Close: end tether's use; restore the flags of the descriptor. */
static void ts_std_close(tt_io *io) {
  tt_stream *s = (tt_stream *)io;
  int i = slot_of(s);
  if (i >= 0) {
    int now = fcntl(i, F_GETFL);
    if (now != -1 && slots[i].saved != -1 && now != slots[i].saved)
      fcntl(i, F_SETFL, slots[i].saved);
    slots[i].s = NULL;
  }
  if (s->is_std == TT_STD_FILE && s->fd >= 0) {
    close(s->fd);                 /* our dup, never 0, 1 or 2 */
    s->fd = -1;
  }
  ts_stream_close(io);
}

static void ts_std_describe(lua_State *L, tt_io *io) {
  tt_stream *s = (tt_stream *)io;
  int i = slot_of(s);
  const char *kind = s->is_std == TT_STD_FILE ? "file"
                   : s->h.handle.type == UV_TTY ? "tty"
                   : s->h.handle.type == UV_TCP ? "tcp" : "pipe";
  lua_pushfstring(L, "%s (%s)", i >= 0 ? std_names[i] : "standard stream",
                  kind);
}

static const tt_io_kind std_kind = { "stdio", ts_std_close, ts_std_describe };

/* A new description of the pipe at descriptor `i` (non-blocking,
** close-on-exec), or -1. */
static int reopen_pipe(int i) {
  char path[32];
  struct stat st;
  if (fstat(i, &st) != 0 || !S_ISFIFO(st.st_mode)) return -1;
  memcpy(path, "/proc/self/fd/", 14);
  path[14] = (char)('0' + i);
  path[15] = '\0';
  /* NOTE: O_NONBLOCK, or an open of a pipe without a writer (reader)
     would wait for one. */
  return open(path, (i == 0 ? O_RDONLY : O_WRONLY) | O_NONBLOCK | O_CLOEXEC);
}

/* Open the standard stream of descriptor `i`: push its userdata. */
static tt_stream *tk_std_open(lua_State *L, tt_sched *S, int i) {
  uv_handle_type type = uv_guess_handle(i);
  tt_stream *s = tk_stream_new(L, S, &std_kind);
  int fd = -1, r = 0;
  s->fd = -1;
  slots[i].s = s;
  slots[i].shared = 0;
  slots[i].saved = fcntl(i, F_GETFL);
  if (type == UV_NAMED_PIPE) {
    fd = reopen_pipe(i);
    if (fd < 0) {
      fd = fcntl(i, F_DUPFD_CLOEXEC, 3);
      slots[i].shared = 1;
    }
    if (fd >= 0) {
      uv_pipe_init(S->loop, &s->h.pipe, 0);
      ts_stream_opened(s);
      r = uv_pipe_open(&s->h.pipe, fd);
    }
  } else if (type == UV_TTY) {
    fd = fcntl(i, F_DUPFD_CLOEXEC, 3);
    if (fd >= 0 && (r = uv_tty_init(S->loop, &s->h.tty, fd, 0)) == 0) {
      uv_os_fd_t used;
      ts_stream_opened(s);
      /* libuv reopened the terminal, dup2'd it over `fd` and uses its own
         descriptor: ours is left to us. */
      if (uv_fileno(&s->h.handle, &used) == 0 && used != fd) close(fd);
    } else if (fd >= 0) {
      r = 0;
      type = UV_FILE;             /* a terminal libuv cannot take: plain */
    }
  } else if (type == UV_TCP) {
    fd = fcntl(i, F_DUPFD_CLOEXEC, 3);
    slots[i].shared = 1;
    if (fd >= 0) {
      uv_tcp_init(S->loop, &s->h.tcp);
      ts_stream_opened(s);
      r = uv_tcp_open(&s->h.tcp, fd);
    }
  } else {
    type = UV_FILE;
  }
  if (type == UV_FILE || type == UV_UDP || type == UV_UNKNOWN_HANDLE) {
    if (fd < 0) fd = fcntl(i, F_DUPFD_CLOEXEC, 3);
    s->is_std = TT_STD_FILE;
    s->fd = fd;                   /* -1: a closed descriptor, EBADF at use */
    return s;
  }
  s->is_std = TT_STD_POLL;
  if (fd < 0) r = uv_translate_sys_error(errno);
  if (r < 0) {
    if (fd >= 0) close(fd);
    ts_io_close(&s->io);
    tk_new_ioerror(L, S, TT_CLS_IO, r, "open");
    lua_pushstring(L, std_names[i]);
    lua_setfield(L, -2, "path");
    lua_error(L);
  }
  return s;
}

/* Push the open standard stream `i`, opening it on first use in a run. */
static void tk_std_get(lua_State *L, tt_sched *S, int i) {
  tt_io **ud;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &stdio_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 3, 0);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &stdio_key);
  }
  lua_rawgeti(L, -1, i);
  ud = lua_touserdata(L, -1);
  if (ud && *ud && !(*ud)->closed) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  if (!S->running)
    luaL_error(L, "tether.%s: only inside tether.run (it is opened on first "
               "use in a run, and the run's end closes it)", std_names[i]);
  tk_std_open(L, S, i);
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, i);
  lua_remove(L, -2);
}

/* ---- core functions --------------------------------------------------- */

/*
** A child was just spawned: one given our descriptors 0-2 cleared
** O_NONBLOCK on them, which a stream on a dup shares.  Set it again.
*/
void ts_stdio_after_spawn(tt_sched *S) {
  int i;
  (void)S;
  for (i = 0; i < 3; i++) {
    uv_os_fd_t fd;
    int fl;
    if (!slots[i].s || !slots[i].shared || slots[i].s->is_std != TT_STD_POLL)
      continue;
    if (uv_fileno(&slots[i].s->h.handle, &fd) != 0) continue;
    fl = fcntl(fd, F_GETFL);
    if (fl != -1 && !(fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  }
}

/* ---- bindings --------------------------------------------------------- */

/* tether.stdin, tether.stdout, tether.stderr: __index of the module */
static int l_std_index(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  const char *k = lua_tostring(L, 2);
  int i;
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  for (i = 0; i < 3; i++)
    if (strcmp(k, std_names[i]) == 0) {
      tk_std_get(L, S, i);
      return 1;
    }
  return 0;
}

/* ---- open ------------------------------------------------------------- */

/* The module table on top gets a metatable whose __index opens the
** standard streams (lua/tether.lua copies it to the public table). */
void tt_stdio_open(lua_State *L, tt_sched *S) {
  lua_createtable(L, 0, 1);
  lua_pushlightuserdata(L, S);
  lua_pushcclosure(L, l_std_index, 1);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
}
