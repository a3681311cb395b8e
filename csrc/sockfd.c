/* sockfd.c: the descriptor of a socket object; see sockfd.h. */
#include <string.h>

#include "compat.h"
#include "sockfd.h"

/* LuaSocket's and LuaSec's class names (their registry metatables) */
static const char *const known[] = {
    "tcp{master}", "tcp{client}", "tcp{server}",
    "udp{unconnected}", "udp{connected}", "SSL:Connection", NULL
};


void cps_fdclasses_init(struct cps_fdclasses *c) {
    memset(c, 0, sizeof *c);
}


/* the index in `known` of the metatable on top of L, or -1 */
static int known_class(lua_State *L) {
    int i, eq = 0;
    for (i = 0; known[i] != NULL && !eq; i++) {
        lua_getfield(L, LUA_REGISTRYINDEX, known[i]);
        eq = lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
    }
    return eq ? i - 1 : -1;
}


/* after getfd answered fd for the userdata at idx: trust its class from
   now on if it is a known one and its first int is that descriptor */
static void learn(lua_State *L, struct cps_fdclasses *c, int idx, int fd) {
    int k;
    if (fd < 0 || c->n == CPS_FDCLASSES_MAX || lua_type(L, idx) != LUA_TUSERDATA
        || cps_rawlen(L, idx) < sizeof(int) || *(const int *)lua_touserdata(L, idx) != fd
        || !lua_getmetatable(L, idx))
        return;
    if ((k = known_class(L)) >= 0) {
        c->tcp_client[c->n] = strcmp(known[k], "tcp{client}") == 0;
        c->mt[c->n++] = lua_topointer(L, -1);
    }
    lua_pop(L, 1);
}


/* (socket, classes) -> socket:getfd(); learns the class from the answer.
   Runs protected: neither getfd nor the registry lookups may unwind
   through the core. */
static int l_ask(lua_State *L) {
    lua_getfield(L, 1, "getfd");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    if (lua_type(L, -1) == LUA_TNUMBER)
        learn(L, lua_touserdata(L, 2), 1, (int)lua_tointeger(L, -1));
    return 1;
}


/* skt:getfd(), protected; -1 unless it answered a number */
static int ask(lua_State *L, struct cps_fdclasses *c, int idx) {
    int fd = -1, t = lua_type(L, idx);
    if (t != LUA_TUSERDATA && t != LUA_TTABLE)
        return -1;
    lua_pushcfunction(L, l_ask);
    lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, c);
    if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TNUMBER)
        fd = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return fd;
}


int cps_sockfd_class(lua_State *L, const struct cps_fdclasses *c, int idx) {
    if (c->n && lua_type(L, idx) == LUA_TUSERDATA && lua_getmetatable(L, idx)) {
        const void *mt = lua_topointer(L, -1);
        int i;
        lua_pop(L, 1);
        for (i = 0; i < c->n; i++)
            if (c->mt[i] == mt)
                return i;
    }
    return -1;
}


int cps_sockfd(lua_State *L, struct cps_fdclasses *c, int idx) {
    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    if (cps_sockfd_class(L, c, idx) >= 0)
        return *(const int *)lua_touserdata(L, idx);
    return ask(L, c, idx);
}
