# Fault and no-data-lost specs, heavy configuration.
#   make test-heavy   spec/nodataloss_spec.lua with COPAS_HEAVY=1: 1000
#                     concurrent connections of 1 B .. 64 MB, plain and TLS,
#                     the client side in a child process (about a minute;
#                     needs `ulimit -n` >= 1100: the recipe raises the soft
#                     limit to 4096 when the hard limit allows it)

.PHONY: test-heavy
test-heavy: SPECS = spec/nodataloss_spec.lua
test-heavy: deps all
	@ulimit -n 4096 2>/dev/null || true; \
	COPAS_HEAVY=1 $(if $(COPAS_BACKEND),COPAS_BACKEND=$(COPAS_BACKEND)) $(call run_specs,$(LUA),$(BUILD))
