# The command-line runner: `make lint` also checks bin/copas (a Lua script
# without the .lua suffix, so `luacheck lua spec examples` does not see it).

.PHONY: lint-bin
lint: lint-bin

lint-bin:
	luacheck bin/copas
