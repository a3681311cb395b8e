/*
** Included before each file by `make tidy` only, never by the build.
** Lua's error functions never return (they longjmp out), but Lua's headers
** do not say so; without this the analyzer follows paths past
** luaL_error(L, "not enough memory") and reports null dereferences that
** cannot happen. Redeclaring them with the attribute fixes its model.
*/
#include <lua.h>
#include <lauxlib.h>

LUA_API int (lua_error) (lua_State *L) __attribute__((noreturn));
LUALIB_API int (luaL_error) (lua_State *L, const char *fmt, ...) __attribute__((noreturn));
LUALIB_API int (luaL_argerror) (lua_State *L, int arg, const char *extramsg) __attribute__((noreturn));
LUALIB_API int (luaL_typeerror) (lua_State *L, int arg, const char *tname) __attribute__((noreturn));
