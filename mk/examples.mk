# The command-line runner: `make lint` also checks bin/copas (a Lua script
# without the .lua suffix, so `luacheck lua spec examples` does not see it).

.PHONY: lint-bin
lint: lint-bin

lint-bin:
	luacheck bin/copas

# Installs the rock into a temporary tree without the network
# (--deps-mode=none: LuaSocket and LuaSec are Debian packages) and runs the
# installed copas command from outside the checkout, against the installed
# modules only. Needs the luarocks package. Removes the tree and what
# `luarocks make` leaves in the checkout.
.PHONY: check-install
check-install:
	@command -v luarocks >/dev/null || { echo "check-install: luarocks is not installed"; exit 1; }
	@tree=$$(mktemp -d); trap 'rm -rf "$$tree"; rm -f csrc/*.o copas/core.so; rmdir copas 2>/dev/null; true' EXIT; \
	luarocks --lua-version 5.4 make --deps-mode=none --tree "$$tree" \
	  rockspec/copas-c-scm-1.rockspec >"$$tree/luarocks.log" 2>&1 \
	  || { cat "$$tree/luarocks.log"; exit 1; }; \
	out=$$(cd / && env -u LUA_PATH -u LUA_CPATH \
	  LUA_PATH_5_4="$$tree/share/lua/5.4/?.lua;$$tree/share/lua/5.4/?/init.lua;;" \
	  LUA_CPATH_5_4="$$tree/lib/lua/5.4/?.so;;" \
	  "$$tree/bin/copas" -e 'copas.pause(0.01) print(package.searchpath("copas.core", package.cpath))' 2>&1); \
	if [ "$$out" = "$$tree/lib/lua/5.4/copas/core.so" ]; then \
	  echo "check-install: bin/copas installed and runs with the installed modules"; \
	else echo "check-install: unexpected output: $$out"; exit 1; fi
