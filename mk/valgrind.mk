# The spec suite under Valgrind's memcheck (Lua 5.4).
#
#   make valgrind                      every spec file, two at a time
#   make valgrind VALGRIND_SPECS=spec/timer_spec.lua
#   make valgrind VALGRIND_JOBS=1      one at a time (a busy machine)
#
# The whole suite takes about 6 minutes on two cores; natively it takes
# under one.
#
# The core is built in its own directory with -O1 -g (readable stacks,
# no sanitizer). mk/valgrind-spec.sh runs each spec file in its own
# memcheck process under prove, which reads busted's TAP output. A spec
# file fails when any process memcheck watched had an error: an invalid
# read or write, a use of an uninitialised value, a bad free, or memory
# definitely or indirectly lost at exit. Still-reachable and possibly-lost
# blocks are not errors: a process that ends with os.exit() without closing
# its Lua state leaves everything reachable. mk/valgrind.supp hides reports
# that belong to the libraries (Lua, OpenSSL, LuaSocket, LuaSec, busted);
# each entry says why it is not ours.
#
# Child processes: the Lua processes the specs start through /bin/sh (and
# timeout, both traced on the way) run under memcheck too, with the same
# options, and are checked the same way. The other programs the specs
# start (nginx, python, openssl, ip and the small tools) are not
# followed: they are not ours and would only be slowed down. Neither is
# bash, and so neither are scale_spec.lua's children, which it starts
# through bash: they raise their descriptor limit with `ulimit -n`, which
# memcheck refuses to a program it runs.
#
# VALGRIND_FILTER_OUT: a busted --filter-out pattern (a Lua pattern on the
# test name) to leave tests out under memcheck; none by default.
VALGRIND_FILTER_OUT ?=

# VALGRIND_TIME_SCALE stretches the deadline of the HTTPS fan-out example's
# smoke test (spec/examples_spec.lua), whose fetches must beat it.
VALGRIND_TIME_SCALE ?= 20

# VALGRIND_TLS_MB is the megabytes each way the large-transfer test of
# tls_spec.lua moves on each of its connections (20 natively): under
# memcheck, OpenSSL's ciphers run some 50 times slower. COPAS_LUA tells
# the specs that start a Lua child which interpreter to name: under
# memcheck, /proc/<pid>/exe is valgrind's own tool binary.

VALGRIND ?= valgrind
VALGRIND_BUILD = build/valgrind-5.4
VALGRIND_OBJS = $(patsubst csrc/%.c,$(VALGRIND_BUILD)/obj/%.o,$(SRCS))
VALGRIND_CORE = $(VALGRIND_BUILD)/copas/core.so
VALGRIND_CFLAGS = -O1 -g -fno-omit-frame-pointer
# the slowest files under memcheck first, so that two jobs end together
VALGRIND_SLOW = spec/examples_spec.lua spec/http_spec.lua spec/nodataloss_spec.lua \
  spec/tcp_spec.lua spec/badinput_spec.lua spec/docs_spec.lua spec/backend_spec.lua \
  spec/core_paths_spec.lua spec/faults_spec.lua spec/tls_spec.lua spec/wrap_spec.lua \
  spec/ftp_spec.lua spec/resolver_spec.lua
VALGRIND_SPECS ?= $(filter $(SPECS),$(VALGRIND_SLOW)) $(filter-out $(VALGRIND_SLOW),$(SPECS))
VALGRIND_JOBS ?= 2
# seconds one spec file may take under memcheck
VALGRIND_TIMEOUT ?= 420
VALGRIND_TLS_MB ?= 1
VALGRIND_LOGS = $(VALGRIND_BUILD)/logs

# programs started by the specs that memcheck does not follow (patterns
# on the executable's path)
vg_empty :=
vg_space := $(vg_empty) $(vg_empty)
vg_comma := ,
VALGRIND_SKIP = $(subst $(vg_space),$(vg_comma),$(strip \
  */bash */nginx *python* */openssl */ip */id */mktemp */readlink \
  */mkdir */rm */kill */cat */chmod */sleep */env */dirname */basename */uname))

VALGRIND_OPTS = --tool=memcheck --num-callers=40 \
  --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite,indirect --error-exitcode=89 \
  --track-origins=no --child-silent-after-fork=yes \
  --trace-children=yes --trace-children-skip=$(VALGRIND_SKIP) \
  --suppressions=$(ROOT)/mk/valgrind.supp

$(VALGRIND_CORE): $(VALGRIND_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(VALGRIND_CFLAGS) $(LDFLAGS) -o $@ $(VALGRIND_OBJS) $(LIBS)

$(VALGRIND_BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(VALGRIND_CFLAGS) -I/usr/include/lua5.4 -c -o $@ $<

.PHONY: valgrind
valgrind:
	@scripts/deps.sh build test lua5.4 valgrind
	@command -v $(VALGRIND) >/dev/null || \
	  { echo "valgrind not found (Debian package: valgrind)"; exit 1; }
	@$(MAKE) $(VALGRIND_CORE)
	@mkdir -p $(VALGRIND_LOGS)
	LUA_PATH='$(LUA_PATH_VALUE)' LUA_CPATH='$(call cpath,$(VALGRIND_BUILD))' \
	VALGRIND='$(VALGRIND)' VALGRIND_OPTS="$(VALGRIND_OPTS)" \
	VALGRIND_LOGS='$(ROOT)/$(VALGRIND_LOGS)' VALGRIND_LUA=lua5.4 \
	BUSTED='$(BUSTED)' VALGRIND_TIMEOUT=$(VALGRIND_TIMEOUT) \
	VALGRIND_FILTER_OUT="$(VALGRIND_FILTER_OUT)" \
	COPAS_TLS_MB=$(VALGRIND_TLS_MB) COPAS_LUA=lua5.4 COPAS_TIME_SCALE=$(VALGRIND_TIME_SCALE) \
	$(if $(COPAS_BACKEND),COPAS_BACKEND=$(COPAS_BACKEND)) \
	prove $(PROVE_FLAGS) --timer -j$(VALGRIND_JOBS) -e 'sh mk/valgrind-spec.sh' \
	  $(VALGRIND_SPECS)
