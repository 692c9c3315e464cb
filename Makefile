# tether: build the C core (csrc/*.c -> build/tether/core.so) and run the suite.
#
#   make              build build/tether/core.so
#   make test         install missing Debian packages (as root), build, run spec/ with busted
#   make check        the suite against an ASan+UBSan build (build-asan/), LeakSanitizer on
#   make valgrind     the suite under valgrind against the normal build
#   make tsan         the thread and file specs against a ThreadSanitizer build (build-tsan/)
#   make embed-demo   build and run examples/embed/host.c, a C host that embeds Lua and tether
#                     (EMBED_WRAP='valgrind ...' runs it under a wrapper, as .ci/run does)
#   make demo | bench | stress [SEED=n DURATION=s] | clean | install [PREFIX=/usr/local]
#
# The suite runners (.ci/suite) end with the line "N passed, N failed".

SRC      := $(wildcard csrc/*.c)
OBJ      := $(SRC:csrc/%.c=build/obj/%.o)
ASAN_OBJ := $(SRC:csrc/%.c=build-asan/obj/%.o)
TSAN_OBJ := $(SRC:csrc/%.c=build-tsan/obj/%.o)
ROCKSPEC := rockspec/tether-scm-1.rockspec

# Lua's symbols come from the interpreter that loads the module: link libuv only.
# _POSIX_C_SOURCE: uv.h needs POSIX types (pthread_rwlock_t) that -std=c99 hides.
CFLAGS   ?= -O2 -g
PKG_CFLAGS := $(shell pkg-config --cflags lua5.4 libuv 2>/dev/null || echo -I/usr/include/lua5.4)
ALL_CFLAGS  = -std=c99 $(CFLAGS) -fPIC -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L \
              $(PKG_CFLAGS) -MMD -MP
LDLIBS   := -luv
LUA_LIBS := $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
TSAN     := -fsanitize=thread -fno-omit-frame-pointer

# Debian packages the targets need; .ci/deps.sh installs the missing ones as root.
TEST_DEBS := lua5.4 liblua5.4-dev libuv1-dev lua-busted lua-luv pkg-config python3 procps netbase

# Runs a script against this checkout (the suite sets its own paths in spec/helper.lua).
LUA_ENV = LUA_PATH='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;' LUA_CPATH='$(CURDIR)/build/?.so;;'

# valgrind: --child-silent-after-fork, because a child that fails to exec (the
# spawn-failure specs) exits under valgrind in the forked copy of the suite.
#
# Sanitizer settings for `make check`. ASan/LSan reports go to files under
# build-asan/reports (child processes' too), which .ci/suite prints and counts as
# failures; UBSan reports go to stderr and stop the process (exit status 1), which
# .ci/suite counts too. .ci/lsan.supp lists leaks outside tether, never tether's.
# NOTE: Lua 5.4 dlcloses C modules when a state closes, before LSan and valgrind
# look for leaks at exit, so a leak in tether.core would come from "<unknown module>".
# Every lua5.4 process (test children too) runs LUA_INIT_5_4 first: it keeps them mapped.
KEEP_CLIBS = LUA_INIT_5_4='local m = getmetatable(debug.getregistry()._CLIBS); if m then m.__gc = nil end'
ASAN_REPORTS := $(CURDIR)/build-asan/reports
ASAN_ENV = $(KEEP_CLIBS) ASAN_OPTIONS=detect_leaks=1:log_path=$(ASAN_REPORTS)/asan \
           LSAN_OPTIONS=suppressions=$(CURDIR)/.ci/lsan.supp:print_suppressions=0 \
           UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Settings for `make tsan`: the specs that use libuv's pool from several threads
# (worker Lua states, file jobs) against core.so built with -fsanitize=thread;
# libtsan is preloaded into lua5.4, as libasan is for `make check`. Reports go to
# files under build-tsan/reports, which .ci/suite prints and counts as failures.
TSAN_SPECS   := spec/thread_spec.lua spec/fs_spec.lua
TSAN_REPORTS := $(CURDIR)/build-tsan/reports
TSAN_ENV = TSAN_OPTIONS=log_path=$(TSAN_REPORTS)/tsan:halt_on_error=0:second_deadlock_stack=1

.PHONY: all test check valgrind tsan demo embed-demo bench stress clean install deps rockspec-check

all: build/tether/core.so

# ---- the normal build ----------------------------------------------------

build/tether/core.so: $(OBJ) | build/tether
	$(if $(SRC),,$(error no csrc/*.c to build))
	$(CC) -shared $(LDFLAGS) -o $@ $(OBJ) $(LDLIBS)

build/obj/%.o: csrc/%.c Makefile | build/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# ---- the sanitizer build (never mixed with build/) ---------------------

build-asan/tether/core.so: $(ASAN_OBJ) | build-asan/tether
	$(if $(SRC),,$(error no csrc/*.c to build))
	$(CC) -shared $(SANITIZE) $(LDFLAGS) -o $@ $(ASAN_OBJ) $(LDLIBS)

build-asan/obj/%.o: csrc/%.c Makefile | build-asan/obj
	$(CC) $(ALL_CFLAGS) $(SANITIZE) -c $< -o $@

# ---- the ThreadSanitizer build (build-tsan/) -----------------------------

build-tsan/tether/core.so: $(TSAN_OBJ) | build-tsan/tether
	$(if $(SRC),,$(error no csrc/*.c to build))
	$(CC) -shared $(TSAN) $(LDFLAGS) -o $@ $(TSAN_OBJ) $(LDLIBS)

build-tsan/obj/%.o: csrc/%.c Makefile | build-tsan/obj
	$(CC) $(ALL_CFLAGS) $(TSAN) -c $< -o $@

build/obj build/tether build-asan/obj build-asan/tether build-tsan/obj build-tsan/tether:
	mkdir -p $@

-include $(OBJ:.o=.d) $(ASAN_OBJ:.o=.d) $(TSAN_OBJ:.o=.d)

# build/alloc-harness for spec/alloc_spec.lua (defines ALLOC_HARNESS; the spec
# also builds it by itself when this rule is missing).
-include spec/alloc/Makefile.frag

# ---- tests ---------------------------------------------------------------
# Each runs its steps in order (deps, then a sub-make that builds, then the
# suite), so `make -j test` is safe too.

deps:
	@.ci/deps.sh $(TEST_DEBS)

test: rockspec-check
	@.ci/deps.sh $(TEST_DEBS)
	@$(MAKE) --no-print-directory -s all $(ALLOC_HARNESS) $(EMBED_HOST)
	@.ci/suite --build build

check: rockspec-check
	@.ci/deps.sh $(TEST_DEBS)
	@$(MAKE) --no-print-directory build-asan/tether/core.so $(ALLOC_HARNESS) $(EMBED_HOST)
	@rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	@asan=$$($(CC) -print-file-name=libasan.so); \
	  [ -f "$$asan" ] || { echo "check: $(CC) has no libasan.so"; echo "0 passed, 1 failed"; exit 1; }; \
	  $(ASAN_ENV) .ci/suite --build build-asan --reports $(ASAN_REPORTS) env LD_PRELOAD="$$asan"

valgrind: rockspec-check
	@.ci/deps.sh $(TEST_DEBS) valgrind
	@$(MAKE) --no-print-directory all $(ALLOC_HARNESS) $(EMBED_HOST)
	@$(KEEP_CLIBS) .ci/suite --build build valgrind -q --error-exitcode=1 --leak-check=full --child-silent-after-fork=yes

# The wrapper appends the TSAN_SPECS to busted's command line (.ci/suite runs every
# spec otherwise); build-tsan/unpreload.so keeps libtsan out of the processes the
# specs start (see .ci/tsan_unpreload.c).
build-tsan/unpreload.so: .ci/tsan_unpreload.c | build-tsan/tether
	$(CC) -shared -fPIC -o $@ $<

tsan: rockspec-check
	@.ci/deps.sh $(TEST_DEBS)
	@$(MAKE) --no-print-directory build-tsan/tether/core.so build-tsan/unpreload.so
	@rm -rf $(TSAN_REPORTS) && mkdir -p $(TSAN_REPORTS)
	@tsan=$$($(CC) -print-file-name=libtsan.so); \
	  [ -f "$$tsan" ] || { echo "tsan: $(CC) has no libtsan.so"; echo "0 passed, 1 failed"; exit 1; }; \
	  $(TSAN_ENV) TETHER_TSAN=1 .ci/suite --build build-tsan --reports $(TSAN_REPORTS) \
	    sh -c 'LD_PRELOAD="$$0 $(CURDIR)/build-tsan/unpreload.so" exec "$$@" $(TSAN_SPECS)' "$$tsan"

# The rockspec cannot glob: its list of csrc/*.c must match the directory.
ROCK_SRC := $(sort $(subst ",,$(shell grep -o '"csrc/[^"]*\.c"' $(ROCKSPEC) 2>/dev/null)))
rockspec-check:
	@if [ "$(ROCK_SRC)" != "$(sort $(SRC))" ]; then \
	  echo "rockspec-check: $(ROCKSPEC) and csrc/*.c list different sources:"; \
	  echo "  only in csrc/:       $(filter-out $(ROCK_SRC),$(SRC))"; \
	  echo "  only in the rockspec: $(filter-out $(SRC),$(ROCK_SRC))"; \
	  echo "0 passed, 1 failed"; exit 1; \
	fi

# ---- programs written elsewhere in the project ---------------------------

# The demo runs real commands. Its job file has a job that fails and one that
# overruns its timeout, on purpose: the job runner then exits 1, which the demo
# expects (any other status fails it). First keep-going, then fail-fast (the
# first failure terminates the running commands), then pexec over the examples.
DEMO_JOBS = $(LUA_ENV) lua5.4 examples/jobrunner.lua
demo: all
	@$(DEMO_JOBS) --keep-going examples/jobs.txt; s=$$?; [ $$s -eq 1 ] || \
	  { echo "demo: expected exit status 1 ('test' fails, 'docs' times out), got $$s"; exit 1; }
	@echo "(exit status 1, as expected: 'test' fails and 'docs' times out on purpose)"; echo
	@$(DEMO_JOBS) -j 2 examples/jobs.txt; s=$$?; [ $$s -eq 1 ] || \
	  { echo "demo: expected exit status 1 from the fail-fast run, got $$s"; exit 1; }
	@echo "(exit status 1, as expected)"; echo
	@echo "pexec: syntax-check every example, 4 at once"
	@printf '%s\n' examples/*.lua | $(LUA_ENV) lua5.4 examples/pexec.lua -j 4 \
	  sh -c 'luac5.4 -p "$$1" && echo "syntax ok: $$1"' sh {}

# The C host links Lua and libuv only: it loads tether with require (LUA_CPATH).
EMBED_HOST := build/embed-host
$(EMBED_HOST): examples/embed/host.c csrc/tether.h Makefile | build/tether
	$(CC) -std=c99 $(CFLAGS) -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L $(PKG_CFLAGS) \
	  -Icsrc -o $@ examples/embed/host.c $(LUA_LIBS) -luv

# The host prints its checks and "N passed, N failed"; a failing exit status
# (a valgrind report) adds a last tally line that counts it.
embed-demo:
	@.ci/deps.sh $(TEST_DEBS) $(if $(findstring valgrind,$(EMBED_WRAP)),valgrind)
	@$(MAKE) --no-print-directory all $(EMBED_HOST)
	@$(LUA_ENV) $(EMBED_WRAP) $(EMBED_HOST); rc=$$?; \
	  if [ $$rc -ne 0 ]; then echo "embed-demo: exit status $$rc"; echo "0 passed, 1 failed"; exit 1; fi

bench: all
	bash bench/run.sh

stress: all
	$(LUA_ENV) $(if $(SEED),SEED='$(SEED)') $(if $(DURATION),DURATION='$(DURATION)') \
	  lua5.4 spec/stress/soak.lua

# ---- housekeeping --------------------------------------------------------

PREFIX ?= /usr/local
LUA_LMOD = $(DESTDIR)$(PREFIX)/share/lua/5.4
LUA_CMOD = $(DESTDIR)$(PREFIX)/lib/lua/5.4

install: all
	install -D -m 644 lua/tether.lua $(LUA_LMOD)/tether.lua
	install -D -m 755 build/tether/core.so $(LUA_CMOD)/tether/core.so

clean:
	rm -rf build build-asan build-tsan
