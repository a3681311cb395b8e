-- luacheck configuration: `make lint` (luacheck lua spec examples)
std = "max"            -- the library runs on Lua 5.1/LuaJIT up to 5.4

files["spec"] = {
  std = "+busted",
}
