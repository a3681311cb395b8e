# Load and soak run: bench/soak.lua opens and closes TCP connections on
# 127.0.0.1 and arms timers until the counts are reached or SOAK_TIME
# seconds have passed, then checks that memory, descriptors, registry
# entries and scheduler counts came back (details in bench/soak.lua).
#
#   make soak                              120 s, epoll
#   make soak SOAK_TIME=900                a long run
#   make soak COPAS_BACKEND=select         fewer connections in flight
#   make soak LUA_VERSION=luajit
#
# SOAK_CONNS, SOAK_TIMERS, SOAK_CLIENTS, SOAK_PORTS, SOAK_TIMER_THREADS,
# SOAK_CLOSE and SOAK_SLACK are passed through from the command line or the
# environment.

SOAK_TIME ?= 120
SOAK_VARS = SOAK_CONNS SOAK_TIMERS SOAK_CLIENTS SOAK_PORTS SOAK_TIMER_THREADS \
            SOAK_CLOSE SOAK_SLACK

# the allocator's in-use figure for the run (glibc mallinfo2)
SOAK_MEM = $(BUILD)/soak_mem.so

$(SOAK_MEM): bench/soak_mem.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -I$(LUA_INC) -shared -o $@ $<

# the settings given on the command line or in the environment, passed on
SOAK_ENV = SOAK_TIME=$(SOAK_TIME) $(foreach v,$(SOAK_VARS),$(if $($(v)),$(v)=$($(v)))) \
           $(if $(COPAS_BACKEND),COPAS_BACKEND=$(COPAS_BACKEND))

.PHONY: soak
soak: $(CORE) $(SOAK_MEM)
	LUA_PATH='$(LUA_PATH_VALUE)' LUA_CPATH='$(call cpath,$(BUILD))' $(strip $(SOAK_ENV)) \
	timeout -k 10 $$(( $(SOAK_TIME) + 120 )) $(LUA) bench/soak.lua
