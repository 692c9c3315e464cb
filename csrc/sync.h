/* sync.h - the waiting queues shared by the synchronisation primitives (sync.c) and channels (channel.c) */
#ifndef TETHER_SYNC_H
#define TETHER_SYNC_H

#include "internal.h"

/* The kinds of primitive, and what a waiter on one of its queues does. */
enum {
  TT_SYNC_EVENT, TT_SYNC_LOCK, TT_SYNC_SEMAPHORE, TT_SYNC_LIMITER,
  TT_SYNC_CONDITION, TT_SYNC_CHANNEL
};
enum { TT_OP_WAIT, TT_OP_ACQUIRE, TT_OP_SEND, TT_OP_RECEIVE };

/*
** A FIFO of blocked tasks, linked through t->wlink.  `head` is the first
** member: a waiter's t->wlist points at it, so ts_wake takes the task off
** the queue, and dump finds the queue (and so the primitive) from the task.
** A task that is handed what it waits for (a value, a token, the lock) gets
** t->granted = 1 before it is woken; a task woken without it was cancelled,
** or the primitive changed under it (a channel closed), and looks again.
*/
typedef struct tt_waitq {
  tt_task *head;
  const char *name;   /* the primitive's name (kept alive by its userdata), or NULL */
  uint8_t kind;       /* TT_SYNC_* */
  uint8_t op;         /* TT_OP_* */
} tt_waitq;

#define TT_WAITQ_OF(t) ((tt_waitq *)(void *)(t)->wlist)

void ts_waitq_init(tt_waitq *q, int kind, int op);
void ts_waitq_push(tt_waitq *q, tt_task *t);
tt_task *ts_waitq_grant(tt_waitq *q);
void ts_waitq_wake_all(tt_waitq *q, int granted);
int ts_waitq_count(const tt_waitq *q);

tt_task *tk_sync_owner(lua_State *L, tt_sched *S, const char *op);
int tk_sync_done(lua_State *L, int nres);
int tk_sync_cancelled(lua_State *L, tt_task *t);
void *tk_sync_self(lua_State *L, const char *what, const char *tname);
const char *tk_sync_name(lua_State *L, int opts, const char *fname,
                         const char *const keys[]);
void tk_push_wouldblock(lua_State *L, tt_sched *S, const char *op);

#endif
