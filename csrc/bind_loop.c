/*
** bind_loop.c: the loop and task-set objects as Lua sees them. Each
** binding goes check, reserve, mutate, push: everything that may raise
** comes before the loop changes. Argument checks that name a public
** copas function live in lua/copas.lua; these guard the core itself.
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "clock.h"
#include "loop.h"

#define LOOP_MT "copas.core.loop"
#define SET_MT  "copas.core.set"

const char cps_mark_read = 'r', cps_mark_write = 'w', cps_mark_sleep = 's', cps_mark_join = 'j';


static struct cps_loop *check_loop(lua_State *L) {
    struct cps_loop *loop = luaL_checkudata(L, 1, LOOP_MT);
    if (loop->poller == NULL)
        luaL_error(L, "copas core: loop is closed");
    return loop;
}


/* the thread of the coroutine at idx, or NULL */
static struct cps_thread *to_thread(lua_State *L, struct cps_loop *loop, int idx) {
    lua_State *co = lua_tothread(L, idx);
    return co ? cps_loop_thread(L, loop, co) : NULL;
}


static int push_thread(lua_State *L, struct cps_thread *th) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, th->ref);
    return 1;
}


static int oom(lua_State *L) {
    return luaL_error(L, "not enough memory");
}


static int spawn(lua_State *L, int first) {
    struct cps_loop *loop = check_loop(L);
    struct cps_thread *th;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    th = cps_loop_spawn(L, loop, lua_gettop(L) - 2, first);
    return th ? push_thread(L, th) : oom(L);
}


/* loop:spawn(fn, ...) -> coroutine: a new thread, first run next round */
static int l_spawn(lua_State *L) {
    return spawn(L, 0);
}


/* loop:spawnfirst(fn, ...) -> coroutine: as spawn, ahead of the threads
   already ready (handlers of accepted connections) */
static int l_spawnfirst(lua_State *L) {
    return spawn(L, 1);
}


/* loop:runnow(co): resume a thread made by spawn right now */
static int l_runnow(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    struct cps_thread *th = to_thread(L, loop, 2);
    if (th != NULL && th->state == CPS_T_READY)
        cps_loop_run_now(L, loop, th);
    return 0;
}


/* loop:step([timeout]) -> true | false | nil, err */
static int l_step(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    double timeout = luaL_optnumber(L, 2, -1);
    int r;
    if (loop->stepping)
        return luaL_error(L, "copas.step: the loop is already stepping (called from inside a thread?)");
    if (timeout != timeout)
        timeout = -1;
    loop->stepping = 1;
    r = cps_loop_step(L, loop, timeout);
    loop->stepping = 0;
    if (r < 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(-r));
        return 2;
    }
    lua_pushboolean(L, r);
    return 1;
}


static int l_finished(lua_State *L) {
    lua_pushboolean(L, cps_loop_finished(check_loop(L)));
    return 1;
}


/* loop:wakeup(co) -> true | nil, "not sleeping" */
static int l_wakeup(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    struct cps_thread *th = to_thread(L, loop, 2);
    if (th == NULL || !cps_loop_wakeup(L, loop, th)) {
        lua_pushnil(L);
        lua_pushliteral(L, "not sleeping");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}


/* loop:remove(co) -> autoclose socket | nil; the running one is dropped
   at its next suspension */
static int l_remove(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    struct cps_thread *th = to_thread(L, loop, 2);
    if (th == NULL)
        return 0;
    if (th->state == CPS_T_RUNNING) {
        th->flags |= CPS_TF_REMOVED;
        return 0;
    }
    cps_loop_drop(L, loop, th);
    return 1;
}


/* loop:removeall() -> table whose keys are the sockets to close */
static int l_removeall(lua_State *L) {
    cps_loop_remove_all(L, check_loop(L));
    return 1;
}


/* loop:timeout(delay[, callback]): arm or cancel for the calling thread */
static int l_timeout(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    double delay = luaL_checknumber(L, 2);
    struct cps_thread *th = loop->current;
    if (th == NULL)
        return luaL_error(L, "copas.timeout: must be called from inside a copas thread");
    if (!(delay > 0) || isinf(delay))
        delay = 0;
    lua_settop(L, 3);
    if (delay > 0 && cps_heap_reserve(&loop->heap, 1) < 0)
        return oom(L);
    cps_loop_set_timeout(L, loop, th, delay);
    return 0;
}


/* loop:status() -> read, write, active, timer, inactive, timeout */
static int l_status(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    int fd, rd = 0, wr = 0;
    cps_loop_sweep(L, loop);
    for (fd = 0; fd < loop->ws.cap; fd++) {
        struct cps_fdent *e = loop->ws.ents[fd];
        if (e == NULL)
            continue;
        rd += (e->server || !cps_queue_empty(&e->readers));
        wr += !cps_queue_empty(&e->writers);
    }
    lua_pushinteger(L, rd);
    lua_pushinteger(L, wr);
    lua_pushinteger(L, (lua_Integer)loop->ready.len);
    lua_pushinteger(L, (lua_Integer)loop->n_sleep);
    lua_pushinteger(L, (lua_Integer)loop->n_idle + (lua_Integer)loop->n_queued);
    lua_pushinteger(L, (lua_Integer)loop->n_timeouts + (lua_Integer)loop->n_io_deadline);
    return 6;
}


/* loop:stats(enable) turns per-round timing on or off; loop:stats() ->
   steps, tot, min, max, min_ever, max_ever, start (seconds) and starts a
   new window */
static int l_stats(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    struct cps_stats *s = &loop->stats;
    if (!lua_isnoneornil(L, 2)) {
        int on = lua_toboolean(L, 2);
        if (on && !s->on) {
            memset(s, 0, sizeof *s);
            s->min_ever = -1;
            s->start = cps_clock_wall();
        }
        s->on = on;
        return 0;
    }
    lua_pushinteger(L, (lua_Integer)s->steps);
    lua_pushnumber(L, s->tot);
    lua_pushnumber(L, s->min);
    lua_pushnumber(L, s->max);
    lua_pushnumber(L, s->min_ever < 0 ? 0 : s->min_ever);
    lua_pushnumber(L, s->max_ever);
    lua_pushnumber(L, s->start);
    s->steps = 0;
    s->tot = s->min = s->max = 0;
    s->start = cps_clock_wall();
    return 7;
}


/* loop:forget(skt): wake its waiters (they meet "closed") and stop
   watching its descriptor; called before the socket is closed */
static int l_forget(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    cps_loop_forget_socket(L, loop, 2);
    return 0;
}


/* loop:addserver(skt) -> true | nil, err */
static int l_addserver(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    int err = cps_loop_add_server(L, loop, 2);
    if (err < 0) {
        lua_pushnil(L);
        cps_loop_pusherror(L, -err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}


static int l_removeserver(lua_State *L) {
    cps_loop_remove_server(L, check_loop(L), 2);
    return 0;
}


/* loop:setsocket(co, skt, autoclose): the socket reported to its error
   handler on the first run, closed at its end when autoclose */
static int l_setsocket(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    struct cps_thread *th = to_thread(L, loop, 2);
    int ref;
    if (th == NULL)
        return 0;
    lua_settop(L, 4);
    lua_pushvalue(L, 3);
    ref = luaL_ref(L, LUA_REGISTRYINDEX);
    luaL_unref(L, LUA_REGISTRYINDEX, th->sock_ref);
    th->sock_ref = ref;
    if (lua_toboolean(L, 4))
        th->flags |= CPS_TF_AUTOCLOSE;
    else
        th->flags &= ~CPS_TF_AUTOCLOSE;
    return 0;
}


/* loop:getsocket(co): the socket set by setsocket and its autoclose flag,
   or nothing */
static int l_getsocket(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    struct cps_thread *th = to_thread(L, loop, 2);
    if (th == NULL || th->sock_ref == LUA_NOREF)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, th->sock_ref);
    lua_pushboolean(L, (th->flags & CPS_TF_AUTOCLOSE) != 0);
    return 2;
}


/* loop:sethooks{on_end, on_accept, on_timeout, on_debug}: kept as the
   loop's user value, not in the registry, where the hooks (closures over
   the loop) would keep the loop and its poller alive for good */
static int l_sethooks(lua_State *L) {
    check_loop(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    cps_setuservalue(L, 1);
    return 0;
}


static int l_debug(lua_State *L) {
    check_loop(L)->debug = lua_toboolean(L, 2);
    return 0;
}


static int l_backend(lua_State *L) {
    lua_pushstring(L, check_loop(L)->ops->name);
    return 1;
}


static const char *const state_names[] = {
    "ready", "running", "sleeping", "forever", "io", "joining", "queued", "gone"
};


/* loop:state(co) -> state name | nil when not a copas thread */
static int l_state(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    struct cps_thread *th = to_thread(L, loop, 2);
    if (th == NULL)
        return 0;
    lua_pushstring(L, state_names[th->state]);
    return 1;
}


/* loop:current() -> the copas thread being resumed, or nil */
static int l_current(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    return loop->current ? push_thread(L, loop->current) : 0;
}


static int l_sweep(lua_State *L) {
    cps_loop_sweep(L, check_loop(L));
    return 0;
}


static int l_gc(lua_State *L) {
    struct cps_loop *loop = luaL_checkudata(L, 1, LOOP_MT);
    if (loop->poller != NULL)
        cps_loop_close(L, loop);
    return 0;
}


/* ------------------------------------------------------------ task sets */

static struct cps_taskset *check_set(lua_State *L, int idx) {
    struct cps_taskset **ps = luaL_checkudata(L, idx, SET_MT);
    return *ps;
}


/* loop:newset(max) -> set */
static int l_newset(lua_State *L) {
    double max;
    struct cps_taskset **ps;
    check_loop(L);
    max = luaL_checknumber(L, 2);
    luaL_argcheck(L, max >= 1 && max < 1e15 && max == (double)(long long)max, 2,
                  "positive integer expected");
    ps = lua_newuserdata(L, sizeof *ps);
    *ps = NULL;
    luaL_getmetatable(L, SET_MT);
    lua_setmetatable(L, -2);
    if ((*ps = cps_taskset_new((size_t)max)) == NULL)
        return oom(L);
    return 1;
}


/* loop:task(set, fn, ...) -> coroutine */
static int l_task(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    struct cps_taskset *s = check_set(L, 2);
    struct cps_thread *th;
    luaL_checktype(L, 3, LUA_TFUNCTION);
    th = cps_loop_spawn_task(L, loop, s, lua_gettop(L) - 3);
    return th ? push_thread(L, th) : oom(L);
}


/* loop:untask(set, co): the task leaves the set (queued: never runs) */
static int l_untask(lua_State *L) {
    struct cps_loop *loop = check_loop(L);
    struct cps_taskset *s = check_set(L, 2);
    struct cps_thread *th = to_thread(L, loop, 3);
    if (th == NULL || th->set != s)
        return 0;
    if (th->state == CPS_T_QUEUED) {
        cps_loop_drop(L, loop, th);
        return 0;
    }
    cps_loop_untask(loop, th);
    return 0;
}


/* set:counts() -> running, queued, max */
static int l_set_counts(lua_State *L) {
    struct cps_taskset *s = check_set(L, 1);
    lua_pushinteger(L, (lua_Integer)s->running);
    lua_pushinteger(L, (lua_Integer)s->nqueued);
    lua_pushinteger(L, (lua_Integer)s->max);
    return 3;
}


static int l_set_gc(lua_State *L) {
    struct cps_taskset **ps = luaL_checkudata(L, 1, SET_MT);
    if (*ps != NULL) {
        (*ps)->handle = 0;
        cps_taskset_maybe_free(*ps);
        *ps = NULL;
    }
    return 0;
}


/* -------------------------------------------------------------- module */

/* core.new([backend]) -> loop; backend defaults to $COPAS_BACKEND */
static int l_new(lua_State *L) {
    const char *name = luaL_optstring(L, 1, getenv("COPAS_BACKEND"));
    const struct cps_poller_ops *ops = cps_poller_find(name);
    struct cps_loop *loop;
    int err;
    if (ops == NULL)
        return luaL_error(L, "copas: unknown backend '%s' (COPAS_BACKEND: epoll, poll or select)", name);
    loop = cps_newuserdata(L, sizeof *loop);
    memset(loop, 0, sizeof *loop);
    luaL_getmetatable(L, LOOP_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L);                            /* no hooks yet */
    cps_setuservalue(L, -2);
    if ((err = cps_loop_init(loop, ops)) < 0)
        return luaL_error(L, "copas: cannot create the %s poller: %s", ops->name, strerror(-err));
    lua_newtable(L);                            /* weak values: fd -> socket */
    lua_newtable(L);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    loop->socks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);                            /* weak value: {loop} */
    lua_newtable(L);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 1);
    loop->hooks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);                            /* weak values: idle threads */
    lua_newtable(L);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    loop->idle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}


/* copas.pause in C: one call level less than a Lua function calling
   coroutine.yield, which for a new thread is one CallInfo allocation less
   on its first run. A number that is not NaN yields at once; anything else,
   and every call while debugging, first goes through the Lua function
   `slow` (upvalue 2), which raises on bad input, logs, and returns the
   seconds to sleep. */
static int pause_yield(lua_State *L) {
    const struct cps_loop *loop = lua_touserdata(L, lua_upvalueindex(1));
    int plain = lua_type(L, 1) == LUA_TNUMBER && !loop->debug;
    double s = plain ? lua_tonumber(L, 1) : 0;
    if (!plain || s != s) {
        lua_settop(L, 1);
        lua_pushvalue(L, lua_upvalueindex(2));
        lua_pushvalue(L, 1);
        lua_call(L, 1, 1);
        s = lua_tonumber(L, -1);
    }
    lua_settop(L, 0);
    lua_pushnumber(L, s < 0 ? 0 : s);
    lua_pushlightuserdata(L, (void *)&cps_mark_sleep);
    return lua_yield(L, 2);
}


/* loop:spend() -> cps_loop_spend, for the socket functions written in Lua */
static int l_spend(lua_State *L) {
    lua_pushboolean(L, cps_loop_spend(check_loop(L)));
    return 1;
}


int cps_bind_iofns(lua_State *L);

/* loop:iofns(...) -> receive, send in C (bind_io.c), or nothing */
static int l_iofns(lua_State *L) {
    check_loop(L);
    return cps_bind_iofns(L);
}


/* loop:pausefn(slow) -> the C pause above, bound to this loop */
static int l_pausefn(lua_State *L) {
    luaL_checkudata(L, 1, LOOP_MT);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    lua_pushcclosure(L, pause_yield, 2);
    return 1;
}


static int l_now(lua_State *L) {
    lua_pushnumber(L, cps_clock_now());
    return 1;
}


static int l_gettime(lua_State *L) {
    lua_pushnumber(L, cps_clock_wall());
    return 1;
}


static const luaL_Reg loop_methods[] = {
    { "spawn", l_spawn }, { "spawnfirst", l_spawnfirst }, { "runnow", l_runnow }, { "step", l_step },
    { "finished", l_finished }, { "wakeup", l_wakeup }, { "remove", l_remove },
    { "removeall", l_removeall }, { "timeout", l_timeout }, { "status", l_status },
    { "stats", l_stats }, { "forget", l_forget }, { "addserver", l_addserver },
    { "removeserver", l_removeserver }, { "setsocket", l_setsocket },
    { "getsocket", l_getsocket },
    { "sethooks", l_sethooks }, { "debug", l_debug }, { "backend", l_backend },
    { "state", l_state }, { "current", l_current }, { "newset", l_newset },
    { "task", l_task }, { "untask", l_untask }, { "sweep", l_sweep },
    { "pausefn", l_pausefn }, { "spend", l_spend }, { "iofns", l_iofns }, { NULL, NULL }
};

static const luaL_Reg set_methods[] = {
    { "counts", l_set_counts }, { NULL, NULL }
};

static const luaL_Reg module[] = {
    { "new", l_new }, { "now", l_now }, { "gettime", l_gettime }, { NULL, NULL }
};


static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc) {
    luaL_newmetatable(L, name);                 /* mt */
    lua_newtable(L);                            /* mt methods */
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");             /* mt */
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}


int cps_bind_loop_open(lua_State *L) {
    new_class(L, LOOP_MT, loop_methods, l_gc);
    new_class(L, SET_MT, set_methods, l_set_gc);
    luaL_newlib(L, module);
    lua_pushlightuserdata(L, (void *)&cps_mark_read);
    lua_setfield(L, -2, "READ");
    lua_pushlightuserdata(L, (void *)&cps_mark_write);
    lua_setfield(L, -2, "WRITE");
    lua_pushlightuserdata(L, (void *)&cps_mark_sleep);
    lua_setfield(L, -2, "SLEEP");
    lua_pushlightuserdata(L, (void *)&cps_mark_join);
    lua_setfield(L, -2, "JOIN");
    return 1;
}
