/* core.c: luaopen_copas_core, the one symbol this library exports. */
#include "compat.h"

int cps_bind_loop_open(lua_State *L);
int cps_bind_pool_open(lua_State *L);


CPS_EXPORT int luaopen_copas_core(lua_State *L) {
    cps_bind_loop_open(L);
    cps_bind_pool_open(L);
    lua_pushliteral(L, "0.1.0");
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
