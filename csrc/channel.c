/* channel.c - memory channels: tether.channel(capacity) -> send, recv, with Trio's semantics */
#include <math.h>
#include <string.h>

#include "sync.h"

/*
** One channel (tt_chan, a userdata) is shared by every endpoint (tt_end, a
** userdata per send or receive endpoint, clones included).  An endpoint's
** user values are 1: the channel's userdata (which holds the name), and 2:
** the buffer, a Lua table used as a ring of `size` slots (1-based) from
** `first`.
**
** Waiting senders and receivers are on the channel's two tt_waitq.  A
** waiting sender keeps its value at index 2 of its own stack; a receiver
** that arrives takes it from there.  A waiting receiver is handed a value
** by pushing it onto its stack (ROOM made room for that before it
** blocked).  Receivers wait only while the buffer is empty, senders only
** while it is full, so a value never waits in the buffer while a receiver
** waits, and values come out in the order they were sent.
**
** Cancellation: a task woken with a value (granted) returns it, even when a
** cancellation arrived in the same tick; the Cancelled comes at its next
** checkpoint.  A task woken by a cancellation has been taken off the queue
** by ts_wake before anyone could hand it anything: it took nothing, sent
** nothing.
*/

typedef struct tt_chan {
  tt_waitq sendq;           /* senders waiting for room (or for a receiver) */
  tt_waitq recvq;           /* receivers waiting for a value */
  lua_Integer capacity;     /* LUA_MAXINTEGER: unbounded */
  lua_Integer n;            /* values in the buffer */
  lua_Integer first;        /* slot of the oldest one, 0-based */
  lua_Integer size;         /* slots in the ring */
  int nsend, nrecv;         /* open endpoints of each side */
} tt_chan;

enum { SIDE_SEND, SIDE_RECV };

typedef struct tt_end {
  tt_chan *ch;
  uint8_t side;
  uint8_t closed;
} tt_end;

enum { UV_CHAN = 1, UV_BUF = 2 };

#define UP_MT lua_upvalueindex(2)   /* this side's endpoint metatable */
#define RING_MIN 16

/* Before a task blocks: room on its stack for a value handed to it, or
** taken from it, while it is suspended (lua_xmove never grows a stack). */
#define ROOM(L) luaL_checkstack(L, 4, NULL)

static const char *const chan_keys[] = {"name", NULL};

/* ---- static helpers --------------------------------------------------- */

static tt_end *check_end(lua_State *L, const char *what, const char *tname) {
  return (tt_end *)tk_sync_self(L, what, tname);
}
#define check_send(L, w) check_end(L, w, "tether.SendChannel")
#define check_recv(L, w) check_end(L, w, "tether.ReceiveChannel")

static int raise_closed(lua_State *L, tt_sched *S, const char *op) {
  tk_new_ioerror(L, S, TT_CLS_CLOSED, UV_EBADF, op);
  lua_pushliteral(L, "the channel endpoint is closed");
  lua_setfield(L, -2, "message");
  return lua_error(L);
}

static int raise_broken(lua_State *L, tt_sched *S) {
  tk_new_ioerror(L, S, TT_CLS_BROKEN, UV_EPIPE, "send");
  lua_pushliteral(L, "every receive endpoint of the channel is closed");
  lua_setfield(L, -2, "message");
  return lua_error(L);
}

static int raise_end(lua_State *L, tt_sched *S) {
  tk_new_error(L, S, TT_CLS_END_OF_CHANNEL,
               "every send endpoint of the channel is closed and its "
               "buffer is empty");
  return lua_error(L);
}

/*
** Make room for one more value in the ring at `buf` (n == size < capacity):
** double it.  NOTE: the table's array part is grown first, by a store at
** the new last slot, so that a memory error leaves the ring as it was; the
** slots before `first` then move up behind the old last slot.
*/
static void ring_grow(lua_State *L, tt_chan *ch, int buf) {
  lua_Integer size = ch->size, nsize = size * 2, i;
  lua_pushboolean(L, 0);
  lua_rawseti(L, buf, nsize);             /* may raise: nothing changed */
  for (i = 0; i < ch->first; i++) {
    lua_rawgeti(L, buf, i + 1);
    lua_rawseti(L, buf, size + i + 1);
    lua_pushnil(L);
    lua_rawseti(L, buf, i + 1);
  }
  if (size + ch->first < nsize) {
    lua_pushnil(L);
    lua_rawseti(L, buf, nsize);
  }
  ch->size = nsize;
}

/* Append the value on top of the stack to the ring at `buf` (room known). */
static void ring_push(lua_State *L, tt_chan *ch, int buf) {
  lua_Integer slot = (ch->first + ch->n) % ch->size;
  lua_rawseti(L, buf, slot + 1);
  ch->n++;
}

/* Push the oldest value of the ring at `buf`, and drop it from the ring. */
static void ring_pop(lua_State *L, tt_chan *ch, int buf) {
  lua_rawgeti(L, buf, ch->first + 1);
  lua_pushnil(L);
  lua_rawseti(L, buf, ch->first + 1);
  ch->first = (ch->first + 1) % ch->size;
  ch->n--;
}

/*
** Send the value at index 2 through endpoint `e` (at 1) now if it can go:
** to a waiting receiver, or into the buffer.  Returns 1 when sent, 0 when
** the sender must wait; raises when `e` is closed or nobody can receive.
*/
static int send_now(lua_State *L, tt_sched *S, tt_end *e) {
  tt_chan *ch = e->ch;
  if (e->closed) return raise_closed(L, S, "send");
  if (ch->nrecv == 0) return raise_broken(L, S);
  if (ch->recvq.head) {
    tt_task *r = ch->recvq.head;
    lua_pushvalue(L, 2);
    lua_xmove(L, r->co, 1);
    ts_waitq_grant(&ch->recvq);
    return 1;
  }
  if (ch->n < ch->capacity && ch->sendq.head == NULL) {
    int buf;
    lua_getiuservalue(L, 1, UV_BUF);
    buf = lua_gettop(L);
    if (ch->n == ch->size) {
      ring_grow(L, ch, buf);
      /* a collection there may have closed the last receiver (its __gc) */
      if (ch->nrecv == 0) return raise_broken(L, S);
    }
    lua_pushvalue(L, 2);
    ring_push(L, ch, buf);
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

/*
** Receive through endpoint `e` (at 1) now if a value is there: push it and
** return 1.  Returns 0 when the receiver must wait, -1 at the end of the
** channel; raises when `e` is closed.
*/
static int recv_now(lua_State *L, tt_sched *S, tt_end *e) {
  tt_chan *ch = e->ch;
  if (e->closed) return raise_closed(L, S, "receive");
  if (ch->n > 0) {
    int buf;
    lua_getiuservalue(L, 1, UV_BUF);
    buf = lua_gettop(L);
    ring_pop(L, ch, buf);
    if (ch->sendq.head) {             /* its value takes the slot just freed */
      tt_task *s = ch->sendq.head;
      lua_pushvalue(s->co, 2);
      lua_xmove(s->co, L, 1);
      ring_push(L, ch, buf);
      ts_waitq_grant(&ch->sendq);
    }
    lua_remove(L, buf);
    return 1;
  }
  if (ch->sendq.head) {               /* capacity 0: straight from the sender */
    tt_task *s = ch->sendq.head;
    lua_pushvalue(s->co, 2);
    lua_xmove(s->co, L, 1);
    ts_waitq_grant(&ch->sendq);
    return 1;
  }
  if (ch->nsend == 0) return -1;
  return 0;
}

/* Wake the tasks of `q` blocked through endpoint `e` (at index 1 of their
** stacks): they find `e` closed. */
static void wake_through(tt_waitq *q, tt_end *e) {
  tt_task *t = q->head, *last;
  if (t == NULL) return;
  last = t->wlink.prev;
  for (;;) {
    tt_task *next = t->wlink.next;
    int done = t == last;
    if (lua_touserdata(t->co, 1) == e) ts_wake(t, 0);
    if (done) break;
    t = next;
  }
}

/* Close endpoint `e` (at `idx`): idempotent, never blocks, never raises. */
static void end_close(lua_State *L, int idx, tt_end *e) {
  tt_chan *ch = e->ch;
  if (e->closed) return;
  e->closed = 1;
  if (e->side == SIDE_SEND) {
    wake_through(&ch->sendq, e);
    if (--ch->nsend == 0) ts_waitq_wake_all(&ch->recvq, 0);
  } else {
    wake_through(&ch->recvq, e);
    if (--ch->nrecv == 0) {
      /* nobody can receive: drop what is buffered, senders get Broken */
      lua_Integer i;
      lua_getiuservalue(L, idx, UV_BUF);
      for (i = 1; i <= ch->size; i++) {
        lua_pushnil(L);
        lua_rawseti(L, -2, i);
      }
      lua_pop(L, 1);
      ch->n = ch->first = 0;
      ts_waitq_wake_all(&ch->sendq, 0);
    }
  }
}

/* Push a new endpoint of `side` for channel `ch`, whose userdata and
** buffer are at `chan` and `buf`. */
static tt_end *push_end(lua_State *L, tt_chan *ch, int side, int mtidx,
                        int chan, int buf) {
  tt_end *e = lua_newuserdatauv(L, sizeof *e, 2);
  e->ch = ch;
  e->side = (uint8_t)side;
  e->closed = 0;
  lua_pushvalue(L, mtidx);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, chan);
  lua_setiuservalue(L, -2, UV_CHAN);
  lua_pushvalue(L, buf);
  lua_setiuservalue(L, -2, UV_BUF);
  if (side == SIDE_SEND) ch->nsend++;
  else ch->nrecv++;
  return e;
}

/* ---- bindings: send side ---------------------------------------------- */

static int k_send_wait(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *t = S->current;
  tt_end *e = lua_touserdata(L, 1);
  (void)status; (void)ctx;
  lua_settop(L, 2);
  if (t->granted) {               /* a receiver took the value */
    t->granted = 0;
    return 0;
  }
  if (t->wake_cancel) tk_sync_cancelled(L, t);
  if (send_now(L, S, e)) return 0;
  ROOM(L);
  ts_waitq_push(&e->ch->sendq, t);
  return tk_block(L, t, TT_W_SYNC, k_send_wait);
}

/* send:send(value)  -- a checkpoint; waits while the buffer is full */
static int l_send(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_end *e = check_send(L, "send:send");
  tt_task *t;
  if (lua_isnoneornil(L, 2))
    return tk_argerror(L, 2, "send:send", "nil cannot be sent on a channel");
  t = tk_current(L, S, "send:send");
  lua_settop(L, 2);
  tk_sync_cancelled(L, t);
  if (send_now(L, S, e)) return tk_sync_done(L, 0);
  ROOM(L);
  ts_waitq_push(&e->ch->sendq, t);
  return tk_block(L, t, TT_W_SYNC, k_send_wait);
}

/* send:send_nowait(value)  -- raises tether.WouldBlock when it would wait */
static int l_send_nowait(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_end *e = check_send(L, "send:send_nowait");
  if (lua_isnoneornil(L, 2))
    return tk_argerror(L, 2, "send:send_nowait",
                       "nil cannot be sent on a channel");
  lua_settop(L, 2);
  if (send_now(L, S, e)) return 0;
  tk_push_wouldblock(L, S, "send:send_nowait");
  return lua_error(L);
}

/* ---- bindings: receive side ------------------------------------------- */

/* Stack: 1 the endpoint, 2 true for the for-loop form (the end of the
** channel then returns nil instead of raising). */
static int k_recv_wait(lua_State *L, int status, lua_KContext ctx) {
  tt_sched *S = TT_UPSCHED(L);
  tt_task *t = S->current;
  tt_end *e = lua_touserdata(L, 1);
  int r;
  (void)status; (void)ctx;
  if (t->granted) {               /* a sender pushed the value */
    t->granted = 0;
    return 1;
  }
  lua_settop(L, 2);
  if (t->wake_cancel) tk_sync_cancelled(L, t);
  r = recv_now(L, S, e);
  if (r > 0) return 1;
  if (r < 0) return lua_toboolean(L, 2) ? 0 : raise_end(L, S);
  ROOM(L);
  ts_waitq_push(&e->ch->recvq, t);
  return tk_block(L, t, TT_W_SYNC, k_recv_wait);
}

static int tk_receive(lua_State *L, int iter) {
  tt_sched *S = TT_UPSCHED(L);
  tt_end *e = check_recv(L, iter ? "for v in recv" : "recv:receive");
  tt_task *t = tk_current(L, S, iter ? "for v in recv" : "recv:receive");
  int r;
  lua_settop(L, 1);
  lua_pushboolean(L, iter);
  tk_sync_cancelled(L, t);
  r = recv_now(L, S, e);
  if (r > 0) return tk_sync_done(L, 1);
  if (r < 0) return iter ? 0 : raise_end(L, S);
  ROOM(L);
  ts_waitq_push(&e->ch->recvq, t);
  return tk_block(L, t, TT_W_SYNC, k_recv_wait);
}

/* recv:receive() -> value  -- a checkpoint; waits while the buffer is empty */
static int l_receive(lua_State *L) {
  return tk_receive(L, 0);
}

/* for v in recv do ... end  -- __call: ends at the end of the channel */
static int l_recv_call(lua_State *L) {
  return tk_receive(L, 1);
}

/* recv:receive_nowait() -> value  -- raises tether.WouldBlock when empty */
static int l_receive_nowait(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_end *e = check_recv(L, "recv:receive_nowait");
  int r;
  lua_settop(L, 1);
  r = recv_now(L, S, e);
  if (r > 0) return 1;
  if (r < 0) return raise_end(L, S);
  tk_push_wouldblock(L, S, "recv:receive_nowait");
  return lua_error(L);
}

/* ---- bindings: both sides ---------------------------------------------- */

/* ep:close()  -- also __close and __gc; idempotent, never a checkpoint */
static int l_end_close(lua_State *L) {
  tt_end *e = lua_touserdata(L, 1);
  if (e == NULL || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, UP_MT))
    return luaL_error(L, "bad self for 'close' (a channel endpoint "
                      "expected); call it as a method");
  lua_pop(L, 1);
  end_close(L, 1, e);
  return 0;
}

/* ep:clone() -> a new endpoint of the same side */
static int l_end_clone(lua_State *L) {
  tt_sched *S = TT_UPSCHED(L);
  tt_end *e = tk_sync_self(L, "clone", "a channel endpoint");
  if (e->closed) return raise_closed(L, S, "clone");
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, UV_CHAN);
  lua_getiuservalue(L, 1, UV_BUF);
  push_end(L, e->ch, e->side, UP_MT, 2, 3);
  return 1;
}

/* ep:statistics() -> { current_buffer_used, max_buffer_size,
**   open_send_channels, open_receive_channels, tasks_waiting_send,
**   tasks_waiting_receive } */
static int l_end_statistics(lua_State *L) {
  tt_end *e = tk_sync_self(L, "statistics", "a channel endpoint");
  tt_chan *ch = e->ch;
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, ch->n);
  lua_setfield(L, -2, "current_buffer_used");
  if (ch->capacity == LUA_MAXINTEGER) lua_pushnumber(L, HUGE_VAL);
  else lua_pushinteger(L, ch->capacity);
  lua_setfield(L, -2, "max_buffer_size");
  lua_pushinteger(L, ch->nsend);
  lua_setfield(L, -2, "open_send_channels");
  lua_pushinteger(L, ch->nrecv);
  lua_setfield(L, -2, "open_receive_channels");
  lua_pushinteger(L, ts_waitq_count(&ch->sendq));
  lua_setfield(L, -2, "tasks_waiting_send");
  lua_pushinteger(L, ts_waitq_count(&ch->recvq));
  lua_setfield(L, -2, "tasks_waiting_receive");
  return 1;
}

static int l_end_tostring(lua_State *L) {
  tt_end *e = lua_touserdata(L, 1);
  const char *name = e->ch->sendq.name;
  lua_pushfstring(L, "tether.%sChannel%s%s%s%s",
                  e->side == SIDE_SEND ? "Send" : "Receive",
                  name ? " '" : "", name ? name : "", name ? "'" : "",
                  e->closed ? " (closed)" : "");
  return 1;
}

/* tether.channel(capacity [, opts]) -> send, recv
**   capacity: an integer >= 0 (0: every send waits for a receiver), or
**   math.huge (unbounded) */
static int l_channel(lua_State *L) {
  lua_Integer cap;
  const char *name;
  tt_chan *ch;
  int isint;
  if (lua_type(L, 1) != LUA_TNUMBER) {
    lua_pushfstring(L, "capacity expected (an integer >= 0 or math.huge), "
                    "got %s", luaL_typename(L, 1));
    return tk_argerror(L, 1, "tether.channel", lua_tostring(L, -1));
  }
  if (lua_tonumber(L, 1) == HUGE_VAL) {
    cap = LUA_MAXINTEGER;
  } else {
    cap = lua_tointegerx(L, 1, &isint);
    if (!isint || cap < 0)
      return tk_argerror(L, 1, "tether.channel", "capacity must be an "
                         "integer >= 0 or math.huge");
  }
  name = tk_sync_name(L, 2, "tether.channel", chan_keys);
  lua_settop(L, 2);
  ch = lua_newuserdatauv(L, sizeof *ch, 1);                 /* 3 */
  memset(ch, 0, sizeof *ch);
  ts_waitq_init(&ch->sendq, TT_SYNC_CHANNEL, TT_OP_SEND);
  ts_waitq_init(&ch->recvq, TT_SYNC_CHANNEL, TT_OP_RECEIVE);
  ch->capacity = cap;
  ch->size = cap < RING_MIN ? (cap > 0 ? cap : 1) : RING_MIN;
  if (name) {
    lua_pushstring(L, name);
    ch->sendq.name = ch->recvq.name = lua_tostring(L, -1);
    lua_setiuservalue(L, 3, 1);
  }
  lua_createtable(L, (int)ch->size, 0);                     /* 4: the buffer */
  push_end(L, ch, SIDE_SEND, lua_upvalueindex(2), 3, 4);
  push_end(L, ch, SIDE_RECV, lua_upvalueindex(3), 3, 4);
  return 2;
}

/* ---- tables and open -------------------------------------------------- */

static const luaL_Reg send_methods[] = {
  {"send", l_send}, {"send_nowait", l_send_nowait},
  {"clone", l_end_clone}, {"close", l_end_close},
  {"statistics", l_end_statistics}, {NULL, NULL}
};
static const luaL_Reg recv_methods[] = {
  {"receive", l_receive}, {"receive_nowait", l_receive_nowait},
  {"clone", l_end_clone}, {"close", l_end_close},
  {"statistics", l_end_statistics}, {NULL, NULL}
};
static const luaL_Reg end_meta[] = {
  {"__close", l_end_close}, {"__gc", l_end_close},
  {"__tostring", l_end_tostring}, {NULL, NULL}
};

/* Make one side's metatable (pushed). */
static void open_side(lua_State *L, tt_sched *S, const char *tname,
                      const luaL_Reg *methods) {
  int mt;
  lua_newtable(L);
  mt = lua_gettop(L);
  lua_pushlightuserdata(L, S);
  lua_pushvalue(L, mt);
  luaL_setfuncs(L, end_meta, 2);
  lua_newtable(L);
  lua_pushlightuserdata(L, S);
  lua_pushvalue(L, mt);
  luaL_setfuncs(L, methods, 2);
  lua_setfield(L, mt, "__index");
  lua_pushstring(L, tname);
  lua_setfield(L, mt, "__name");
}

void tt_channel_open(lua_State *L, tt_sched *S) {
  int mod = lua_gettop(L);
  open_side(L, S, "tether.SendChannel", send_methods);
  open_side(L, S, "tether.ReceiveChannel", recv_methods);
  lua_pushlightuserdata(L, S);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_recv_call, 2);
  lua_setfield(L, -2, "__call");
  lua_pushlightuserdata(L, S);
  lua_pushvalue(L, mod + 1);
  lua_pushvalue(L, mod + 2);
  lua_pushcclosure(L, l_channel, 3);
  lua_setfield(L, mod, "channel");
  lua_settop(L, mod);
}
