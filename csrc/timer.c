/* timer.c - the scheduler's timer heap: sleeps and scope deadlines on one libuv timer */
#include "internal.h"

/* ---- static helpers --------------------------------------------------- */

static int tm_less(const tt_timer *a, const tt_timer *b) {
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && a->seq < b->seq);
}

static void tm_place(tt_sched *S, int i, tt_timer *tm) {
  S->heap[i] = tm;
  tm->index = i;
}

static void tm_up(tt_sched *S, int i) {
  tt_timer *tm = S->heap[i];
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!tm_less(tm, S->heap[p])) break;
    tm_place(S, i, S->heap[p]);
    i = p;
  }
  tm_place(S, i, tm);
}

static void tm_down(tt_sched *S, int i) {
  tt_timer *tm = S->heap[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= S->nheap) break;
    if (c + 1 < S->nheap && tm_less(S->heap[c + 1], S->heap[c])) c++;
    if (!tm_less(S->heap[c], tm)) break;
    tm_place(S, i, S->heap[c]);
    i = c;
  }
  tm_place(S, i, tm);
}

/* ---- core functions --------------------------------------------------- */

/*
** Make `tm` pending with `deadline` (restarting it if it was pending).
** The heap grows through the Lua state's allocator.  Returns 0, or -1 when
** memory ran out (nothing changed then).
*/
int ts_timer_start(tt_sched *S, tt_timer *tm, uint64_t deadline) {
  ts_timer_stop(S, tm);
  if (S->nheap == S->capheap) {
    void *ud;
    lua_Alloc f = lua_getallocf(S->L, &ud);
    int ncap = S->capheap ? S->capheap * 2 : 64;
    void *nh = f(ud, S->heap, sizeof(tt_timer *) * (size_t)S->capheap,
                 sizeof(tt_timer *) * (size_t)ncap);
    if (nh == NULL) return -1;
    S->heap = nh;
    S->capheap = ncap;
  }
  tm->deadline = deadline;
  tm->seq = S->seq++;
  tm_place(S, S->nheap++, tm);
  tm_up(S, tm->index);
  return 0;
}

/* Remove `tm` from the heap if it is pending.  Idempotent. */
void ts_timer_stop(tt_sched *S, tt_timer *tm) {
  int i = tm->index;
  if (i < 0) return;
  tm->index = -1;
  if (--S->nheap == i) return;
  tm_place(S, i, S->heap[S->nheap]);
  if (i > 0 && tm_less(S->heap[i], S->heap[(i - 1) / 2])) tm_up(S, i);
  else tm_down(S, i);
}

/* The earliest pending deadline, or TT_NEVER. */
uint64_t ts_timer_next(tt_sched *S) {
  return S->nheap ? S->heap[0]->deadline : TT_NEVER;
}

/* Remove and return the earliest entry if it is due at `now`, else NULL. */
tt_timer *ts_timer_pop_due(tt_sched *S, uint64_t now) {
  tt_timer *tm;
  if (S->nheap == 0 || S->heap[0]->deadline > now) return NULL;
  tm = S->heap[0];
  ts_timer_stop(S, tm);
  return tm;
}
