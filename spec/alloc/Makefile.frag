# spec/alloc/Makefile.frag: build/alloc-harness, the host program of spec/alloc_spec.lua
# (a Lua 5.4 embedding whose allocator fails on demand).  Include it from the
# Makefile; spec/alloc_spec.lua builds the harness with cc itself when missing.
ALLOC_HARNESS := build/alloc-harness

$(ALLOC_HARNESS): spec/alloc/harness.c spec/alloc/Makefile.frag
	@mkdir -p $(dir $@)
	@$(CC) -std=c99 $(CFLAGS) -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L \
	  $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4) \
	  -o $@ spec/alloc/harness.c -llua5.4 -luv

.PHONY: alloc-harness
alloc-harness: $(ALLOC_HARNESS)
