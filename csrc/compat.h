/*
** compat.h: the few Lua C API differences between 5.1/LuaJIT, 5.2, 5.3
** and 5.4 that the core meets, hidden behind one spelling each.
*/
#ifndef CPS_COMPAT_H
#define CPS_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#ifndef LUA_OK
#define LUA_OK 0
#endif

#if LUA_VERSION_NUM >= 504
/* resume `co` with `nargs` values; *nres gets the number of results */
#define cps_resume(co, from, nargs, nres) lua_resume((co), (from), (nargs), (nres))
#elif LUA_VERSION_NUM >= 502
static inline int cps_resume(lua_State *co, lua_State *from, int nargs, int *nres) {
    int st = lua_resume(co, from, nargs);
    *nres = lua_gettop(co);
    return st;
}
#else
static inline int cps_resume(lua_State *co, lua_State *from, int nargs, int *nres) {
    int st;
    (void)from;
    st = lua_resume(co, nargs);
    *nres = lua_gettop(co);
    return st;
}
#endif

/* 5.1 without the 5.2 auxiliary functions (LuaJIT 2.1 has them) */
#if LUA_VERSION_NUM < 502 && !defined(luaL_newlib)
#define luaL_setfuncs(L, reg, nup) luaL_register((L), NULL, (reg))
#define luaL_newlib(L, reg) (lua_newtable(L), luaL_register((L), NULL, (reg)))
#endif

/* a userdata with one user value (5.1 and LuaJIT: its environment table,
   so the value must be a table there) */
#if LUA_VERSION_NUM >= 504
#define cps_newuserdata(L, size) lua_newuserdatauv((L), (size), 1)
#define cps_setuservalue(L, idx) ((void)lua_setiuservalue((L), (idx), 1))
#define cps_getuservalue(L, idx) ((void)lua_getiuservalue((L), (idx), 1))
#elif LUA_VERSION_NUM >= 502
#define cps_newuserdata(L, size) lua_newuserdata((L), (size))
#define cps_setuservalue(L, idx) lua_setuservalue((L), (idx))
#define cps_getuservalue(L, idx) ((void)lua_getuservalue((L), (idx)))
#else
#define cps_newuserdata(L, size) lua_newuserdata((L), (size))
#define cps_setuservalue(L, idx) ((void)lua_setfenv((L), (idx)))
#define cps_getuservalue(L, idx) lua_getfenv((L), (idx))
#endif

/* the size of a userdata */
#if LUA_VERSION_NUM >= 502
#define cps_rawlen(L, idx) lua_rawlen((L), (idx))
#else
#define cps_rawlen(L, idx) lua_objlen((L), (idx))
#endif

#if defined(__GNUC__)
#define CPS_EXPORT __attribute__((visibility("default")))
#else
#define CPS_EXPORT
#endif

#endif
