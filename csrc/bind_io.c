/*
** bind_io.c: copas.receive and copas.send in C, for Lua 5.3 and 5.4.
**
** A Lua copas.receive costs three Lua calls and a dozen table lookups
** around the one call that matters, the socket's receive method; on an
** echo server that was a fifth of the instructions per round trip. These
** functions do the same steps from C: call the socket's method (through
** lua_callk, so a method that yields still works), and when it must wait,
** yield (socket, READ|WRITE, deadline) to the core with lua_yieldk and
** continue in the continuation below. A LuaSocket TCP client is served
** in place instead (lsock.h): its buffer and its I/O functions, no method
** call. They take only the common case: a TCP socket Copas already made
** non-blocking, a line or byte-count pattern, no zero timeout, no debug
** logging. Anything else goes to the Lua function `slow` (the complete
** copas.receive or copas.send), which checks the arguments and raises the
** errors; its error levels count this function as one frame.
**
** The Lua layer owns the tables read here (upvalues): the socket marks
** (`nonblocking`: TCP, DRAINED or UDP, plus TIMED) and the socket
** timeouts. It changes a mark only through set_mark (io_setmark), so the
** copy an owned socket's entry keeps (loop.h) stays right. The steps and
** their order are those of the Lua functions, which remain for Lua 5.1
** and LuaJIT (no continuations) and the test mode.
**
** Stack of receive: 1 socket, 2 pattern, 3 prefix (the partial result so
** far), 4 deadline or nil. Stack of send: 1 socket, 2 data, 3 last byte
** sent, 4 last byte to send, 5 deadline or nil. A continuation's context
** is its stage.
*/
#include <string.h>

#include "compat.h"
#include "clock.h"
#include "loop.h"
#include "lsock.h"

#if LUA_VERSION_NUM >= 503

extern const char cps_mark_read, cps_mark_write, cps_mark_sleep;

/* upvalues */
#define UV_LOOP     lua_upvalueindex(1)
#define UV_MARKS    lua_upvalueindex(2)     /* socket -> mark, see below */
#define UV_TIMEOUTS lua_upvalueindex(3)     /* socket -> {connect, send, receive} */
#define UV_TIMEDOUT lua_upvalueindex(4)     /* timeout_error(err) -> the error to return */
#define UV_SLOW     lua_upvalueindex(5)
#define UV_METHOD   lua_upvalueindex(6)     /* "receive" or "send", interned once */

/* a socket's mark (lua/copas.lua): its kind plus M_TIMED when it has an
   entry in the timeouts table */
enum { M_TCP = 1, M_DRAINED = 2, M_UDP = 3, M_KIND = 3, M_TIMED = 4 };

/* stages, the context of the continuations: K_X calls or yields, K_XED
   takes its results. K_DIRECT is added to the stages of a LuaSocket TCP
   client whose layout io_receive or io_send recognised: its receive and
   send are done in place (lsock.h) while its LuaSocket timeout is zero,
   instead of calling its method. */
enum { K_SLOW, K_DIRTY, K_DIRTIED, K_CALL, K_CALLED, K_WAITED, K_LAST, K_BUDGET };
enum { K_STAGE = 0xff, K_DIRECT = 0x100 };


/* the error of a call that has to wait: "timeout", "wantread", "wantwrite" */
static int must_wait(lua_State *L, int idx) {
    size_t n;
    const char *s;
    if (lua_type(L, idx) != LUA_TSTRING)
        return 0;
    s = lua_tolstring(L, idx, &n);
    return (n == 7 && memcmp(s, "timeout", 7) == 0) || (n == 8 && memcmp(s, "wantread", 8) == 0)
        || (n == 9 && memcmp(s, "wantwrite", 9) == 0);
}


/* marks[socket] of a TCP socket, else 0. The entry e of an owned socket
   (loop.h) keeps its mark: every change goes through store_mark. */
static int mark_of(lua_State *L, struct cps_fdent *e) {
    int m = 0;
    if (e != NULL && e->mark != 0) {
        m = e->mark;
    } else {
        lua_pushvalue(L, 1);
        if (lua_rawget(L, UV_MARKS) == LUA_TNUMBER)
            m = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (e != NULL && m > 0 && m <= M_KIND + M_TIMED)
            e->mark = (unsigned char)m;
    }
    return (m & M_KIND) == M_TCP || (m & M_KIND) == M_DRAINED ? m : 0;
}


/* marks[socket] = the value at idx, and in the entry of an owned socket */
static void store_mark(lua_State *L, struct cps_fdent *e, int idx) {
    lua_pushvalue(L, 1);
    lua_pushvalue(L, idx);
    lua_rawset(L, UV_MARKS);
    if (e != NULL) {
        lua_Integer m = lua_tointeger(L, idx);
        e->mark = (unsigned char)(m > 0 && m <= M_KIND + M_TIMED ? m : 0);
    }
}


/* K_DIRECT for a LuaSocket TCP client whose layout is recognised, else
   0; *known: the socket is of a class the core trusts. e: the socket's
   entry if it is owned */
static int direct_of(lua_State *L, const struct cps_loop *loop, const struct cps_fdent *e,
                     int *known) {
    int cls;
    if (e != NULL) {                            /* checked when claimed */
        *known = 1;
        return K_DIRECT;
    }
    cls = cps_sockfd_class(L, &loop->fdclasses, 1);
    *known = cls >= 0;
    return cps_loop_inplace(L, loop, cls, 1) ? K_DIRECT : 0;
}


/* timeouts[socket][kind] of a socket with mark m: the seconds, else -1 */
static double timeout_of(lua_State *L, int m, const char *kind) {
    double t = -1;
    if (!(m & M_TIMED))
        return t;
    lua_pushvalue(L, 1);
    if (lua_rawget(L, UV_TIMEOUTS) == LUA_TTABLE) {
        if (lua_getfield(L, -1, kind) == LUA_TNUMBER)
            t = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return t;
}


/* push now + t for a positive t, else nil */
static void push_deadline(lua_State *L, double t) {
    if (t > 0)
        lua_pushnumber(L, cps_clock_now() + t);
    else
        lua_pushnil(L);
}


/* hand the call to the Lua function: all its arguments, all its results */
static int to_slow(lua_State *L, lua_KFunction k) {
    lua_pushvalue(L, UV_SLOW);
    lua_insert(L, 1);
    lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, K_SLOW, k);
    return lua_gettop(L);
}


/* park the thread until the socket is ready in `dir`; resumes at `stage`
   with true (ready), false (deadline passed) or an error message */
static int wait_for(lua_State *L, const char *dir, int deadline, int stage, lua_KFunction k) {
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, (void *)dir);
    lua_pushvalue(L, deadline);
    return lua_yieldk(L, 3, stage, k);
}


/* the 3 results at the top are final: count the operation against the
   budget of the thread's run and, once it is spent, yield a round
   (resuming at K_BUDGET) before returning them */
static int finish(lua_State *L, lua_KFunction k) {
    struct cps_loop *loop = lua_touserdata(L, UV_LOOP);
    if (cps_loop_spend(loop)) {
        lua_pushinteger(L, 0);
        lua_pushlightuserdata(L, (void *)&cps_mark_sleep);
        return lua_yieldk(L, 2, K_BUDGET, k);
    }
    return 3;
}


/* the result of the wait at the top: 1 ready, 0 deadline passed; raises
   the error the core resumed with */
static int waited(lua_State *L) {
    int ready;
    if (lua_type(L, -1) == LUA_TSTRING)
        lua_error(L);
    ready = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return ready;
}


/* the last attempt after the deadline: its results, with a must-wait
   error turned into the timeout error */
static int timed_out(lua_State *L) {
    if (lua_isnil(L, -3) && must_wait(L, -2)) {
        lua_pushvalue(L, UV_TIMEDOUT);
        lua_pushvalue(L, -3);
        lua_call(L, 1, 1);
        lua_replace(L, -3);
    }
    return 3;
}


/* ------------------------------------------------------------- receive */

static int receive_k(lua_State *L, int status, lua_KContext ctx);

/* socket:receive(pattern, prefix) */
static void call_receive(lua_State *L, int stage) {
    struct cps_lsock *t = stage & K_DIRECT ? lua_touserdata(L, 1) : NULL;
    if (t != NULL && cps_lsock_nonblocking(t) && cps_lsock_receive(L, t, 2, 3))
        return;
    lua_pushvalue(L, UV_METHOD);
    lua_gettable(L, 1);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_callk(L, 3, 3, stage, receive_k);
}

static int receive_run(lua_State *L, int ctx) {
    int direct = ctx & K_DIRECT, stage = ctx & K_STAGE;
    for (;;) {
        switch (stage) {
        case K_DIRTY:                               /* DRAINED: data buffered? */
            lua_getfield(L, 1, "dirty");
            lua_pushvalue(L, 1);
            lua_callk(L, 1, 1, K_DIRTIED | direct, receive_k);
            /* fallthrough */
        case K_DIRTIED:
            if (lua_toboolean(L, -1)) {
                lua_pop(L, 1);
                stage = K_CALL;
                break;
            }
            lua_pop(L, 1);
            return wait_for(L, &cps_mark_read, 4, K_WAITED | direct, receive_k);
        case K_CALL:
            call_receive(L, K_CALLED | direct);
            /* fallthrough */
        case K_CALLED: {                         /* data, err, partial */
            struct cps_fdent *e;
            const char *dir;
            int mark;
            if (!lua_isnil(L, -3) || !must_wait(L, -2))
                return finish(L, receive_k);
            dir = lua_rawlen(L, -2) == 9 ? &cps_mark_write : &cps_mark_read;   /* wantwrite */
            lua_replace(L, 3);
            lua_pop(L, 2);
            e = cps_loop_owned(L, lua_touserdata(L, UV_LOOP), 1);
            mark = mark_of(L, e);
            if ((mark & M_KIND) == M_TCP) {         /* found nothing: DRAINED */
                lua_getfield(L, 1, "dirty");
                if (!lua_isnil(L, -1)) {
                    lua_pushinteger(L, mark - M_TCP + M_DRAINED);
                    store_mark(L, e, lua_gettop(L));
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
            return wait_for(L, dir, 4, K_WAITED | direct, receive_k);
        }
        case K_WAITED:
            if (waited(L)) {
                stage = K_CALL;
                break;
            }
            call_receive(L, K_LAST | direct);
            /* fallthrough */
        case K_LAST:
            return timed_out(L);
        case K_BUDGET:
            lua_pop(L, 1);                          /* the seconds paused */
            return 3;
        default:                                    /* K_SLOW */
            return lua_gettop(L);
        }
    }
}


static int receive_k(lua_State *L, int status, lua_KContext ctx) {
    (void)status;
    return receive_run(L, (int)ctx);
}


/* copas.receive(socket [, pattern [, prefix]]) */
static int io_receive(lua_State *L) {
    const struct cps_loop *loop = lua_touserdata(L, UV_LOOP);
    struct cps_fdent *e;
    int mark, known, t2, direct;
    double t;
    lua_settop(L, 3);
    t2 = lua_type(L, 2);
    e = cps_loop_owned(L, loop, 1);
    mark = mark_of(L, e);
    if (mark == 0 || loop->debug)
        return to_slow(L, receive_k);
    direct = direct_of(L, loop, e, &known);
    if (t2 == LUA_TNUMBER) {
        double n = lua_tonumber(L, 2);
        if (!(n >= 0))
            return to_slow(L, receive_k);
    } else {
        /* a line: LuaSocket and LuaSec read one for a nil pattern, and
           find that faster than "*l", which they first try to convert to
           a number; other objects get "*l" */
        if (t2 != LUA_TNIL) {
            size_t len;
            const char *p = lua_tolstring(L, 2, &len);
            if (t2 != LUA_TSTRING || len != 2 || p[0] != '*' || p[1] != 'l')
                return to_slow(L, receive_k);
        }
        if (!known)
            lua_pushliteral(L, "*l");
        else
            lua_pushnil(L);
        lua_replace(L, 2);
    }
    t = timeout_of(L, mark, "receive");
    if (t == 0)                                     /* returns on any data */
        return to_slow(L, receive_k);
    push_deadline(L, t);
    if ((mark & M_KIND) == M_TCP)
        return receive_run(L, K_CALL | direct);
    switch (direct ? cps_lsock_buffered(lua_touserdata(L, 1)) : -1) {
    case 0:
        return wait_for(L, &cps_mark_read, 4, K_WAITED | direct, receive_k);
    case 1:
        return receive_run(L, K_CALL | direct);
    default:
        return receive_run(L, K_DIRTY | direct);
    }
}


/* ---------------------------------------------------------------- send */

static int send_k(lua_State *L, int status, lua_KContext ctx);

/* socket:send(data, last + 1, to) */
static void call_send(lua_State *L, int stage) {
    struct cps_lsock *t = stage & K_DIRECT ? lua_touserdata(L, 1) : NULL;
    if (t != NULL && cps_lsock_nonblocking(t)) {
        size_t size;
        const char *s = lua_tolstring(L, 2, &size);
        if (cps_lsock_send(L, t, s, size, lua_tonumber(L, 3) + 1, lua_isnil(L, 4) ? -1 : lua_tonumber(L, 4)))
            return;
    }
    lua_pushvalue(L, UV_METHOD);
    lua_gettable(L, 1);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_pushinteger(L, 1);
    lua_arith(L, LUA_OPADD);
    lua_pushvalue(L, 4);
    lua_callk(L, 4, 3, stage, send_k);
}


static int send_run(lua_State *L, int ctx) {
    int direct = ctx & K_DIRECT, stage = ctx & K_STAGE;
    for (;;) {
        switch (stage) {
        case K_CALL:
            call_send(L, K_CALLED | direct);
            /* fallthrough */
        case K_CALLED: {                            /* last, err, last sent */
            const char *dir;
            if (!lua_isnil(L, -3) || !must_wait(L, -2))
                return finish(L, send_k);
            dir = lua_rawlen(L, -2) == 8 ? &cps_mark_read : &cps_mark_write;   /* wantread */
            lua_replace(L, 3);
            lua_pop(L, 2);
            return wait_for(L, dir, 5, K_WAITED | direct, send_k);
        }
        case K_WAITED:
            if (waited(L)) {
                stage = K_CALL;
                break;
            }
            call_send(L, K_LAST | direct);
            /* fallthrough */
        case K_LAST:
            return timed_out(L);
        case K_BUDGET:
            lua_pop(L, 1);
            return 3;
        default:
            return lua_gettop(L);
        }
    }
}


static int send_k(lua_State *L, int status, lua_KContext ctx) {
    (void)status;
    return send_run(L, (int)ctx);
}


/* copas.send(socket, data [, i [, j]]) */
static int io_send(lua_State *L) {
    const struct cps_loop *loop = lua_touserdata(L, UV_LOOP);
    struct cps_fdent *e;
    int mark, known, t3, t4;
    lua_settop(L, 4);
    t3 = lua_type(L, 3);
    t4 = lua_type(L, 4);
    e = cps_loop_owned(L, loop, 1);
    mark = mark_of(L, e);
    if (mark == 0 || loop->debug || lua_type(L, 2) != LUA_TSTRING
        || (t3 != LUA_TNIL && t3 != LUA_TNUMBER) || (t4 != LUA_TNIL && t4 != LUA_TNUMBER))
        return to_slow(L, send_k);
    if (t3 == LUA_TNIL) {                           /* last = (i or 1) - 1 */
        lua_pushinteger(L, 0);
    } else {
        lua_pushvalue(L, 3);
        lua_pushinteger(L, 1);
        lua_arith(L, LUA_OPSUB);
    }
    lua_replace(L, 3);
    push_deadline(L, timeout_of(L, mark, "send"));
    return send_run(L, K_CALL | direct_of(L, loop, e, &known));
}


/* set_mark(socket, mark): the Lua layer's one way to change a mark */
static int io_setmark(lua_State *L) {
    lua_settop(L, 2);
    store_mark(L, cps_loop_owned(L, lua_touserdata(L, UV_LOOP), 1), 2);
    return 0;
}


/* loop:iofns(marks, timeouts, timeout_error, receive_slow, send_slow)
   -> receive, send, set_mark (nothing before Lua 5.3); the loop is checked
   by the caller */
int cps_bind_iofns(lua_State *L) {
    int i;
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    luaL_checktype(L, 4, LUA_TFUNCTION);
    luaL_checktype(L, 5, LUA_TFUNCTION);
    luaL_checktype(L, 6, LUA_TFUNCTION);
    for (i = 0; i < 2; i++) {
        lua_pushvalue(L, 1);
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 3);
        lua_pushvalue(L, 4);
        lua_pushvalue(L, 5 + i);
        lua_pushstring(L, i == 0 ? "receive" : "send");
        lua_pushcclosure(L, i == 0 ? io_receive : io_send, 6);
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, io_setmark, 2);
    return 3;
}

#else

/* no continuations before 5.3: the Lua functions stay */
int cps_bind_iofns(lua_State *L) {
    (void)L;
    return 0;
}

#endif
