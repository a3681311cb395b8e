# Quality gates for the C core and the rockspec.
#
#   make cppcheck     cppcheck over csrc/ (warning, style, performance,
#                     portability); any finding fails
#   make tidy         clang-tidy over csrc/ with the checks in .clang-tidy;
#                     any finding fails
#   make rocklint     luarocks lint of the rockspec (needs no network)
#   make coverage     the specs on Lua 5.4 against a gcov-instrumented core,
#                     then line coverage of csrc/ per file and in total;
#                     fails under COVERAGE_MIN percent (HTML report in
#                     build/coverage/html)
#
# Debian packages: cppcheck, clang-tidy, lcov (gcov comes with gcc).

.PHONY: cppcheck tidy rocklint coverage

# $(call need,COMMAND,PACKAGE): stop with a hint when COMMAND is missing
need = @command -v $(1) >/dev/null 2>&1 || \
  { echo "make $@: $(1) not found; install the Debian package $(2)" >&2; exit 1; }

# Lua 5.4's headers whatever LUA_VERSION is: the C core is the same for
# every Lua, and one set of headers keeps the results stable
QUALITY_LUA_INC ?= /usr/include/lua5.4

# cppcheck does not read the system headers, so luaconf.h's check that the
# compiler has long long (`#if defined(LLONG_MAX)`) would fail and cppcheck
# would skip every file that includes Lua; LLONG_MAX is given as <limits.h>
# defines it on every target we build for
CPPCHECK ?= cppcheck
CPPCHECK_FLAGS = --enable=warning,style,performance,portability \
  --error-exitcode=1 --inline-suppr --std=c99 --quiet \
  -D_GNU_SOURCE -DLLONG_MAX=9223372036854775807LL \
  -Icsrc -I$(QUALITY_LUA_INC)

cppcheck:
	$(call need,$(CPPCHECK),cppcheck)
	$(CPPCHECK) $(CPPCHECK_FLAGS) $(SRCS)

# the checks and their exclusions are in .clang-tidy (repository root);
# mk/tidy-lua.h tells the analyzer that Lua's error functions do not return
CLANG_TIDY ?= clang-tidy
TIDY_CFLAGS = -std=c99 -D_GNU_SOURCE -Icsrc -I$(QUALITY_LUA_INC) \
  -include mk/tidy-lua.h

tidy:
	$(call need,$(CLANG_TIDY),clang-tidy)
	$(CLANG_TIDY) --quiet $(SRCS) -- $(TIDY_CFLAGS)

ROCKSPEC ?= rockspec/copas-c-scm-1.rockspec

rocklint:
	$(call need,luarocks,luarocks)
	luarocks lint $(ROCKSPEC)

# ------------------------------------------------------------- coverage
#
# An -O0 core built with gcov counters in its own directory; the specs run
# against it (prove, one process per spec file, like `make test`), each
# process adds its counts to the .gcda files at exit, and lcov reads them.
# Counters are updated atomically: the worker pool's threads run C code too.
# A failing spec fails the target, after the report. lcov's stderr goes to
# build/coverage/lcov.log: Debian's lcov 1.16 prints seven harmless
# "Subroutine ... redefined" lines on every capture.
COVERAGE_MIN ?= 90
COV_BUILD = build/cov-5.4
COV_OBJS = $(patsubst csrc/%.c,$(COV_BUILD)/obj/%.o,$(SRCS))
COV_CORE = $(COV_BUILD)/copas/core.so
COV_FLAGS = --coverage -fprofile-update=atomic -O0 -g
COV_OUT = build/coverage
LCOV = lcov --quiet --rc lcov_branch_coverage=0

$(COV_CORE): $(COV_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(COV_FLAGS) $(LDFLAGS) -o $@ $(COV_OBJS) $(LIBS)

$(COV_BUILD)/obj/%.o: csrc/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(COV_FLAGS) -I/usr/include/lua5.4 -c -o $@ $<

coverage: $(COV_CORE)
	$(call need,lcov,lcov)
	@rm -f $(COV_BUILD)/obj/*.gcda
	@rm -rf $(COV_OUT) && mkdir -p $(COV_OUT)
	@rc=0; \
	$(if $(COPAS_BACKEND),COPAS_BACKEND=$(COPAS_BACKEND) )$(call run_specs,lua5.4,$(COV_BUILD)) || rc=$$?; \
	{ $(LCOV) --capture --directory $(COV_BUILD)/obj --base-directory $(ROOT) \
	  --output-file $(COV_OUT)/all.info 2>$(COV_OUT)/lcov.log \
	  || { cat $(COV_OUT)/lcov.log >&2; false; }; } && \
	$(LCOV) --extract $(COV_OUT)/all.info '$(ROOT)/csrc/*' \
	  --output-file $(COV_OUT)/csrc.info && \
	genhtml --quiet --output-directory $(COV_OUT)/html $(COV_OUT)/csrc.info && \
	awk -v min=$(COVERAGE_MIN) -f mk/coverage-table.awk $(COV_OUT)/csrc.info \
	  || rc=1; \
	exit $$rc
