/* io_stdio.c - the standard streams tether.stdin, tether.stdout, tether.stderr */
#include "io.h"

void ts_stdio_after_spawn(tt_sched *S) {
  (void)S;
}

void tt_stdio_open(lua_State *L, tt_sched *S) {
  (void)L; (void)S;
}
