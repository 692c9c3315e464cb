/* timer.c - the scheduler's timer heap: sleeps and scope deadlines on one libuv timer */
#include "internal.h"

/*
** NOTE: each heap slot holds its entry's key (deadline, seq) next to the
** pointer, so sifting compares keys in the array without touching the
** entries: with a million sleepers, each a different task, that is the
** difference between a cache miss per comparison and one per move.
*/
struct tt_heapslot {
  uint64_t deadline;
  uint64_t seq;
  tt_timer *tm;
};

/* ---- static helpers --------------------------------------------------- */

static int slot_less(const tt_heapslot *a, const tt_heapslot *b) {
  return a->deadline < b->deadline ||
         (a->deadline == b->deadline && a->seq < b->seq);
}

static void tm_place(tt_sched *S, int i, tt_heapslot slot) {
  S->heap[i] = slot;
  slot.tm->index = i;
}

static void tm_up(tt_sched *S, int i) {
  tt_heapslot x = S->heap[i];
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!slot_less(&x, &S->heap[p])) break;
    tm_place(S, i, S->heap[p]);
    i = p;
  }
  tm_place(S, i, x);
}

static void tm_down(tt_sched *S, int i) {
  tt_heapslot x = S->heap[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= S->nheap) break;
    if (c + 1 < S->nheap && slot_less(&S->heap[c + 1], &S->heap[c])) c++;
    if (!slot_less(&S->heap[c], &x)) break;
    tm_place(S, i, S->heap[c]);
    i = c;
  }
  tm_place(S, i, x);
}

/* ---- core functions --------------------------------------------------- */

/*
** Make `tm` pending with `deadline` (restarting it if it was pending).
** The heap grows through the Lua state's allocator.  Returns 0, or -1 when
** memory ran out (nothing changed then).
*/
int ts_timer_start(tt_sched *S, tt_timer *tm, uint64_t deadline) {
  tt_heapslot slot;
  ts_timer_stop(S, tm);
  if (S->nheap == S->capheap) {
    void *ud;
    lua_Alloc f = lua_getallocf(S->L, &ud);
    int ncap = S->capheap ? S->capheap * 2 : 64;
    void *nh = f(ud, S->heap, sizeof(tt_heapslot) * (size_t)S->capheap,
                 sizeof(tt_heapslot) * (size_t)ncap);
    if (nh == NULL) return -1;
    S->heap = nh;
    S->capheap = ncap;
  }
  tm->deadline = deadline;
  slot.deadline = deadline;
  slot.seq = S->seq++;
  slot.tm = tm;
  tm_place(S, S->nheap++, slot);
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
  if (i > 0 && slot_less(&S->heap[i], &S->heap[(i - 1) / 2])) tm_up(S, i);
  else tm_down(S, i);
}

/* The earliest pending deadline, or TT_NEVER. */
uint64_t ts_timer_next(tt_sched *S) {
  return S->nheap ? S->heap[0].deadline : TT_NEVER;
}

/* Remove and return the earliest entry if it is due at `now`, else NULL. */
tt_timer *ts_timer_pop_due(tt_sched *S, uint64_t now) {
  tt_timer *tm;
  if (S->nheap == 0 || S->heap[0].deadline > now) return NULL;
  tm = S->heap[0].tm;
  ts_timer_stop(S, tm);
  return tm;
}

/* Free the heap's array (the Lua state is closing; no entry is pending). */
void ts_timer_free(tt_sched *S) {
  void *ud;
  lua_Alloc f;
  if (S->heap == NULL) return;
  f = lua_getallocf(S->L, &ud);
  f(ud, S->heap, sizeof(tt_heapslot) * (size_t)S->capheap, 0);
  S->heap = NULL;
  S->capheap = S->nheap = 0;
}
