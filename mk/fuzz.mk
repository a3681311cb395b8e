# libFuzzer targets (fuzz/, docs/fuzzing.md)
#
#   make fuzz                  build both targets into build/fuzz/ and run them
#                              side by side, FUZZ_TIME seconds each (default 60)
#   make fuzz-build            only build them
#
# FUZZ_CC must be a clang with libFuzzer (Debian: clang-14, libclang-rt-14-dev).
# New inputs go to build/fuzz/corpus/<target>/ (the committed seeds in
# fuzz/corpus/<target>/ are only read); a crash leaves its input in
# build/fuzz/ as crash-<sha1> and fails the goal.

FUZZ_CC ?= $(shell command -v clang-14 >/dev/null 2>&1 && echo clang-14 || echo clang)
FUZZ_TIME ?= 60
# longest input libFuzzer makes up: about 400 operations for fuzz_core
FUZZ_MAX_LEN ?= 1024
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
             -fno-omit-frame-pointer -std=c99 $(WARN) -D_GNU_SOURCE
FUZZ_DIR = build/fuzz
FUZZ_TARGETS = fuzz_core fuzz_poller

FUZZ_POLLER_SRCS = csrc/poller.c csrc/poller_epoll.c csrc/poller_poll.c csrc/poller_select.c
FUZZ_CORE_SRCS = csrc/loop.c csrc/heap.c csrc/ready.c csrc/waitset.c csrc/taskset.c \
                 csrc/thread.c csrc/clock.c csrc/sockfd.c csrc/lsock.c $(FUZZ_POLLER_SRCS)

.PHONY: fuzz fuzz-build

fuzz-build: $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))

# fuzz_core calls into loop.c, which needs the Lua 5.4 library (a lua_State
# for registry references; no coroutine is ever resumed)
$(FUZZ_DIR)/fuzz_core: fuzz/fuzz_core.c $(FUZZ_CORE_SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -I/usr/include/lua5.4 -o $@ fuzz/fuzz_core.c $(FUZZ_CORE_SRCS) \
	  -llua5.4 -lm

$(FUZZ_DIR)/fuzz_poller: fuzz/fuzz_poller.c $(FUZZ_POLLER_SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ fuzz/fuzz_poller.c $(FUZZ_POLLER_SRCS)

# one process per target, both at once; each prints its execution count
fuzz: fuzz-build
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	  $(FUZZ_DIR)/$$t -max_total_time=$(FUZZ_TIME) -max_len=$(FUZZ_MAX_LEN) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus/$$t fuzz/corpus/$$t \
	    > $(FUZZ_DIR)/$$t.log 2>&1 & \
	  eval "pid_$$t=$$!"; \
	done; \
	for t in $(FUZZ_TARGETS); do \
	  eval "wait \$$pid_$$t" || failed="$$failed $$t"; \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/$$t.log); \
	  echo "$$t: $${runs:-?} executions in $(FUZZ_TIME) s (log: $(FUZZ_DIR)/$$t.log)"; \
	done; \
	if [ -n "$$failed" ]; then \
	  for t in $$failed; do \
	    echo "== $$t failed (input: $(FUZZ_DIR)/crash-*, log: $(FUZZ_DIR)/$$t.log):"; \
	    sed -n '/ERROR\|^fuzz_[a-z]*: \|runtime error/,$$p' $(FUZZ_DIR)/$$t.log | head -30; \
	  done; \
	  exit 1; \
	fi
