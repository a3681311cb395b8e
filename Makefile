# copas-c: build in place, run the specs, run the sanitizer build.
#
#   make                       build build/$(LUA_VERSION)/copas/core.so
#   eval "$(make -s env)"      point LUA_PATH/LUA_CPATH at this tree
#   make test                  install missing packages, build, run the specs
#   make test-backends         the specs once per poller: epoll, poll, select
#   make asan                  AddressSanitizer + UBSan build, specs under it
#   make tsan                  ThreadSanitizer build, worker and resolver specs
#   make bench                 benchmark matrix (BENCH=quick: smoke run;
#                              COPAS_REF_PATH=<Copas 4.11 dir> adds a column)
#   make example               run examples/timers.lua against this tree
#   make lint                  rockspec file lists + luacheck
#   make docs                  LDoc reference into docs/reference
#   make cppcheck / make tidy  static analysis of csrc/ (cppcheck, clang-tidy)
#   make rocklint              luarocks lint of the rockspec
#   make coverage              specs against a gcov core; csrc/ line coverage,
#                              fails under COVERAGE_MIN (90); HTML in build/coverage/html
#   make clean                 remove build/ (and luarocks make leftovers)
#
# LUA_VERSION selects the Lua: 5.4 (default), 5.3, 5.1 or luajit.
# COPAS_BACKEND=epoll|poll|select picks the poller at run time (unset: epoll).

LUA_VERSION ?= 5.4

ifeq ($(LUA_VERSION),luajit)
LUA_INC ?= /usr/include/luajit-2.1
LUA ?= luajit
DEPS_LUA = luajit
else
LUA_INC ?= /usr/include/lua$(LUA_VERSION)
LUA ?= lua$(LUA_VERSION)
DEPS_LUA = lua$(LUA_VERSION)
endif

# absolute path of this directory (LUA_PATH and LUA_CPATH need it); the
# rules use paths relative to it, so run make here or with `make -C <dir>`
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
ifneq ($(ROOT),$(CURDIR))
$(error run make in $(ROOT) (make -C $(ROOT) ...))
endif

MAKEFLAGS += --no-print-directory

CC ?= cc
CFLAGS ?= -O2 -g
WARN = -Wall -Wextra
BASE_CFLAGS = -std=c99 $(WARN) -fPIC -fvisibility=hidden -D_GNU_SOURCE
LDFLAGS ?=
LIBS = -lpthread

SRCS := $(sort $(wildcard csrc/*.c))
HDRS := $(wildcard csrc/*.h)

BUILD = build/$(LUA_VERSION)
OBJS = $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SRCS))
CORE = $(BUILD)/copas/core.so

# sanitizer build: always Lua 5.4, its own directory
ASAN_BUILD = build/asan-5.4
ASAN_OBJS = $(patsubst csrc/%.c,$(ASAN_BUILD)/obj/%.o,$(SRCS))
ASAN_CORE = $(ASAN_BUILD)/copas/core.so
ASAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all \
             -fno-omit-frame-pointer -O1 -g

BUSTED ?= /usr/bin/busted
SPECS ?= $(sort $(wildcard spec/*_spec.lua))
PROVE_FLAGS ?= --failures --comments
# a spec file still running after this many seconds is killed (and fails)
SPEC_TIMEOUT ?= 300
BACKENDS = epoll poll select

LUA_PATH_VALUE = $(ROOT)/lua/?.lua;$(ROOT)/lua/?/init.lua;;
cpath = $(ROOT)/$(1)/?.so;;

# runs the specs with interpreter $(1) and C module directory $(2); each
# spec file runs in its own process (prove starts one per file), and
# busted's TAP output gives prove its summary
define run_specs
LUA_PATH='$(LUA_PATH_VALUE)' LUA_CPATH='$(call cpath,$(2))' \
prove $(PROVE_FLAGS) \
  -e 'timeout -k 5 $(SPEC_TIMEOUT) $(1) $(BUSTED) -o TAP' $(SPECS)
endef

.PHONY: all env deps test test-backends asan example lint check-rockspec clean help

all: $(CORE)

# the goals that run something install missing packages before compiling
ifneq ($(filter test test-backends asan example,$(MAKECMDGOALS)),)
$(OBJS) $(ASAN_OBJS): | deps
endif

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

# every object depends on every header: the headers are small and a full
# rebuild takes a second, so no generated dependency files
$(BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -I$(LUA_INC) -c -o $@ $<

$(ASAN_CORE): $(ASAN_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(ASAN_FLAGS) $(LDFLAGS) -o $@ $(ASAN_OBJS) $(LIBS)

$(ASAN_BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(ASAN_FLAGS) -I/usr/include/lua5.4 -c -o $@ $<

# prints the two export lines and nothing else
env:
	@echo "export LUA_PATH='$(LUA_PATH_VALUE)'"
	@echo "export LUA_CPATH='$(call cpath,$(BUILD))'"

# package groups for scripts/deps.sh: `make example` needs no test tools
DEPS_GROUPS = build $(DEPS_LUA) \
  $(if $(filter asan,$(MAKECMDGOALS)),lua5.4) \
  $(if $(filter-out example,$(or $(MAKECMDGOALS),deps)),test)

deps:
	@scripts/deps.sh $(strip $(DEPS_GROUPS))

test: deps all
	$(if $(COPAS_BACKEND),COPAS_BACKEND=$(COPAS_BACKEND)) $(call run_specs,$(LUA),$(BUILD))

test-backends: deps all
	@failed=""; \
	for b in $(BACKENDS); do \
	  echo "== COPAS_BACKEND=$$b"; \
	  COPAS_BACKEND=$$b $(call run_specs,$(LUA),$(BUILD)) || failed="$$failed $$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "failed backends:$$failed"; exit 1; fi

# The sanitizer runtimes must be loaded before the (uninstrumented)
# interpreter starts, hence LD_PRELOAD; child processes the specs start
# inherit it. libcrypt is preloaded too when present: ASan intercepts crypt()
# and finds no real one in a process that loads libcrypt later (Python's
# crypt module, used by the FTP server the FTP spec starts, then crashes).
# Leak detection is off: the Lua interpreter and the libraries busted loads
# do not free everything at exit, and those leaks are not ours. Any ASan or
# UBSan report ends the process with exit code 86 or 87, which fails that
# spec file.
asan: deps $(ASAN_CORE)
	@preload="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)"; \
	crypt="$$($(CC) -print-file-name=libcrypt.so.1)"; \
	if [ -e "$$crypt" ]; then preload="$$preload $$crypt"; fi; \
	echo "LD_PRELOAD=$$preload"; \
	export LD_PRELOAD="$$preload" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:exitcode=86 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=87; \
	$(if $(COPAS_BACKEND),COPAS_BACKEND=$(COPAS_BACKEND) )$(call run_specs,lua5.4,$(ASAN_BUILD))

example: deps all
	LUA_PATH='$(LUA_PATH_VALUE)' LUA_CPATH='$(call cpath,$(BUILD))' \
	$(LUA) examples/timers.lua

lint: check-rockspec
	luacheck lua spec examples

check-rockspec:
	@$(LUA) scripts/check-rockspec.lua

# also what `luarocks make` leaves in the tree
clean:
	rm -rf build
	rm -f csrc/*.o copas/core.so
	@if [ -d copas ]; then rmdir copas; fi

help:
	@sed -n '3,21p' Makefile | sed 's/^# \{0,1\}//'

# ThreadSanitizer build (Lua 5.4, its own directory): the worker pool's
# threads against the loop's. Only the core is instrumented; the runtime is
# preloaded as for asan. The default specs are the ones that start threads:
# /bin/sh (dash) crashes with the TSan runtime preloaded, so specs that run
# processes through io.popen/os.execute cannot run under it.
TSAN_BUILD = build/tsan-5.4
TSAN_OBJS = $(patsubst csrc/%.c,$(TSAN_BUILD)/obj/%.o,$(SRCS))
TSAN_CORE = $(TSAN_BUILD)/copas/core.so
TSAN_FLAGS = -fsanitize=thread -fno-omit-frame-pointer -O1 -g
TSAN_SPECS ?= spec/worker_spec.lua spec/resolver_spec.lua

$(TSAN_CORE): $(TSAN_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(TSAN_FLAGS) $(LDFLAGS) -o $@ $(TSAN_OBJS) $(LIBS)

$(TSAN_BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(TSAN_FLAGS) -I/usr/include/lua5.4 -c -o $@ $<

.PHONY: tsan
tsan: SPECS = $(TSAN_SPECS)
tsan:
	@scripts/deps.sh build test lua5.4
	@$(MAKE) $(TSAN_CORE)
	LD_PRELOAD="$$($(CC) -print-file-name=libtsan.so)" \
	TSAN_OPTIONS=halt_on_error=1:exitcode=88 \
	$(if $(COPAS_BACKEND),COPAS_BACKEND=$(COPAS_BACKEND)) \
	$(call run_specs,lua5.4,$(TSAN_BUILD))

.PHONY: bench
bench: all
	@scripts/deps.sh build bench
	bench/run.sh $(or $(BENCH),full)

# further targets, one file per concern (fuzzing, coverage, docs, ...)
-include $(sort $(wildcard mk/*.mk))
