/* tsan_unpreload.c - preloaded after libtsan by `make tsan`: removes LD_PRELOAD
   from the environment at startup, so that the processes the specs start (sh,
   mkfifo, rm...) run without the ThreadSanitizer runtime, which dash does not
   survive. The lua5.4 process itself keeps the runtime it already loaded. */
#include <stdlib.h>

__attribute__((constructor)) static void tsan_unpreload(void) {
  unsetenv("LD_PRELOAD");
}
