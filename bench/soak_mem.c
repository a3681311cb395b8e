/* soak_mem: the C allocator's own figure for the soak run (bench/soak.lua).
   soak_mem.inuse() -> bytes currently allocated through malloc (glibc
   mallinfo2: arena chunks in use plus mmapped chunks). Unlike the resident
   set size, this falls back when memory is freed, so it tells a leak from
   the allocator keeping pages it had once needed. soak_mem.trim() hands
   the allocator's free pages back to the system (malloc_trim(0)), so that
   the resident size that follows counts pages in use. Built by `make soak`. */
#include <malloc.h>
#include <lua.h>
#include <lauxlib.h>

static int l_inuse(lua_State *L) {
    struct mallinfo2 mi = mallinfo2();
    lua_pushnumber(L, (lua_Number)(mi.uordblks + mi.hblkhd));
    return 1;
}

static int l_trim(lua_State *L) {
    lua_pushboolean(L, malloc_trim(0));
    return 1;
}

__attribute__((visibility("default")))
int luaopen_soak_mem(lua_State *L) {
    lua_newtable(L);
    lua_pushcfunction(L, l_trim);
    lua_setfield(L, -2, "trim");
    lua_pushcfunction(L, l_inuse);
    lua_setfield(L, -2, "inuse");
    return 1;
}
