-- tether: structured concurrency for Lua 5.4 (C core on libuv).
-- Build from a checkout: luarocks --lua-version=5.4 make rockspec/tether-scm-1.rockspec
rockspec_format = "3.0"
package = "tether"
version = "scm-1"

source = {
  -- NOTE: a placeholder: the project has no public remote yet. `luarocks make`
  -- builds the checkout it is run in and never fetches this.
  url = "git+https://example.invalid/tether.git",
}

description = {
  summary = "Structured concurrency for Lua 5.4: task groups, cancel scopes, timeouts, on libuv",
}

dependencies = {
  "lua >= 5.4, < 5.5",
}

external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },
}

build = {
  type = "builtin",
  modules = {
    tether = "lua/tether.lua",
    ["tether.core"] = {
      -- Keep in sync with csrc/*.c: `make rockspec-check` (run by make test) compares.
      sources = {
        "csrc/base.c",
        "csrc/channel.c",
        "csrc/core.c",
        "csrc/dump.c",
        "csrc/embed.c",
        "csrc/errgroup.c",
        "csrc/errors.c",
        "csrc/gather.c",
        "csrc/group.c",
        "csrc/io_dns.c",
        "csrc/io_fs.c",
        "csrc/io_listen.c",
        "csrc/io_op.c",
        "csrc/io_process.c",
        "csrc/io_signal.c",
        "csrc/io_stdio.c",
        "csrc/io_stream.c",
        "csrc/io_tcp.c",
        "csrc/io_thread.c",
        "csrc/io_udp.c",
        "csrc/io_unix.c",
        "csrc/sched.c",
        "csrc/scope.c",
        "csrc/sync.c",
        "csrc/task.c",
        "csrc/timer.c",
      },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "uv" },
      incdirs = { "$(LIBUV_INCDIR)" },
      libdirs = { "$(LIBUV_LIBDIR)" },
    },
  },
}
