-- LuaRocks package for copas-c: the Copas API with its dispatcher in C.
--
-- Debian ships LuaSocket and LuaSec as Debian packages (lua-socket,
-- lua-sec), which LuaRocks does not see as installed rocks. To build and
-- install from a checkout without fetching anything, skip the dependency
-- check:
--
--   luarocks --lua-version 5.4 make --deps-mode=none rockspec/copas-c-scm-1.rockspec
package = "copas-c"
version = "scm-1"

source = {
  url = "git+https://example.invalid/copas-c.git",
  branch = "main",
}

description = {
  summary = "Copas-compatible coroutine dispatcher with a C core",
  detailed = [[
    A drop-in replacement for Copas 4.11: the same modules, functions and
    return conventions, with the scheduler (epoll/poll/select poller, timer
    heap, ready queue) written in C. Scales past select()'s descriptor limit
    and does no work while idle.
  ]],
  license = "MIT",
}

dependencies = {
  "lua >= 5.1",
  "luasocket",
  "luasec",
}

build = {
  type = "builtin",
  modules = {
    ["copas.core"] = {
      sources = {
        "csrc/bind_io.c",
        "csrc/bind_loop.c",
        "csrc/bind_pool.c",
        "csrc/clock.c",
        "csrc/core.c",
        "csrc/heap.c",
        "csrc/loop.c",
        "csrc/lsock.c",
        "csrc/poller.c",
        "csrc/poller_epoll.c",
        "csrc/poller_poll.c",
        "csrc/poller_select.c",
        "csrc/pool.c",
        "csrc/ready.c",
        "csrc/resolve.c",
        "csrc/sockfd.c",
        "csrc/taskset.c",
        "csrc/thread.c",
        "csrc/waitset.c",
      },
      defines = { "_GNU_SOURCE" },
      incdirs = { "csrc" },
      libraries = { "pthread" },
    },
    ["copas"] = "lua/copas.lua",
    ["copas.ftp"] = "lua/copas/ftp.lua",
    ["copas.future"] = "lua/copas/future.lua",
    ["copas.http"] = "lua/copas/http.lua",
    ["copas.limit"] = "lua/copas/limit.lua",
    ["copas.lock"] = "lua/copas/lock.lua",
    ["copas.queue"] = "lua/copas/queue.lua",
    ["copas.resolver"] = "lua/copas/resolver.lua",
    ["copas.semaphore"] = "lua/copas/semaphore.lua",
    ["copas.smtp"] = "lua/copas/smtp.lua",
    ["copas.timer"] = "lua/copas/timer.lua",
    ["copas.waitqueue"] = "lua/copas/waitqueue.lua",
    ["copas.worker"] = "lua/copas/worker.lua",
  },
  install = {
    bin = {
      copas = "bin/copas",
    },
  },
}
