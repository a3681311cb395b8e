/*
** bind_pool.c: worker pools as Lua sees them. A pool object is also the
** completion channel: its getfd() is the descriptor that turns readable
** when jobs finish, so a Copas thread waits on it like on a socket.
**
** Lua jobs cross threads as bytes only: the function as bytecode
** (lua_dump), its arguments and results in a small tagged encoding of
** nil, booleans, numbers, strings and acyclic tables. The loop's state
** encodes and decodes; a worker decodes and encodes in a lua_State of its
** own, which lives as long as the worker and is only touched by it (and,
** after the join, by the thread that frees the pool).
*/
#include <stdlib.h>         /* malloc, realloc, free */
#include <string.h>         /* memcpy, strlen, strcmp */

#include "compat.h"
#include <lualib.h>         /* luaL_openlibs */
#include "pool.h"
#include "resolve.h"

#define POOL_MT "copas.core.pool"
#define BOX_MT  "copas.core.jobbox"
#define MAX_DEPTH 100       /* table nesting copied at most */
#define MAX_THREADS 1024

#if LUA_VERSION_NUM >= 503
#define cps_dump(L, w, d) lua_dump((L), (w), (d), 0)
#else
#define cps_dump(L, w, d) lua_dump((L), (w), (d))
#endif

struct buf {
    char *data;
    size_t len, cap;
};

/* what every worker of a pool starts with */
struct conf {
    char *path, *cpath;         /* package.path and package.cpath, or NULL */
    struct buf init;            /* init chunk (source or bytecode), or empty */
};

struct lua_job {
    struct cps_job job;
    const struct conf *conf;
    struct buf code, args, res; /* res: the results, or one message */
    int ok;
};

struct pool_ud {
    struct cps_pool *pool;
    struct conf *conf;
};

/* anchors a job while Lua code may raise, so an error cannot leak it */
struct box {
    struct cps_job *job;
};


/* --------------------------------------------------------------- bytes */

static int buf_put(struct buf *b, const void *p, size_t n) {
    if (n == 0)
        return 0;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        char *d;
        while (cap < b->len + n)
            cap *= 2;
        if ((d = realloc(b->data, cap)) == NULL)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}


static int buf_tag(struct buf *b, char tag, const void *p, size_t n) {
    return buf_put(b, &tag, 1) < 0 || buf_put(b, p, n) < 0 ? -1 : 0;
}


static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
    (void)L;
    return buf_put(ud, p, n) < 0;
}


/* ------------------------------------------------------------ encoding */

struct enc {
    struct buf *b;
    const char *why;            /* set on failure: what could not be copied */
    const void *path[MAX_DEPTH];
    int depth;
};

static int encode(lua_State *L, int idx, struct enc *e);


/* NOLINTNEXTLINE(misc-no-recursion): nesting is bounded by MAX_DEPTH */
static int encode_table(lua_State *L, int idx, struct enc *e) {
    const void *t = lua_topointer(L, idx);
    int i;
    for (i = 0; i < e->depth; i++)
        if (e->path[i] == t)
            return e->why = "a cyclic table", -1;
    if (e->depth == MAX_DEPTH)
        return e->why = "a table nested more than 100 levels deep", -1;
    if (!lua_checkstack(L, 3) || buf_tag(e->b, '{', NULL, 0) < 0)
        return e->why = "a table (not enough memory)", -1;
    e->path[e->depth++] = t;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int top = lua_gettop(L);
        if (encode(L, top - 1, e) < 0 || encode(L, top, e) < 0)
            return lua_pop(L, 2), -1;
        lua_pop(L, 1);
    }
    e->depth--;
    return buf_tag(e->b, '}', NULL, 0) < 0 ? (e->why = "a table (not enough memory)", -1) : 0;
}


static int encode_number(lua_State *L, int idx, struct enc *e) {
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        return buf_tag(e->b, 'i', &i, sizeof i);
    }
#endif
    {
        lua_Number d = lua_tonumber(L, idx);
        return buf_tag(e->b, 'd', &d, sizeof d);
    }
}


/* append the value at idx (absolute) to e->b: 0, or -1 with e->why */
/* NOLINTNEXTLINE(misc-no-recursion): nesting is bounded by MAX_DEPTH */
static int encode(lua_State *L, int idx, struct enc *e) {
    size_t len;
    const char *s;
    int r;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        r = buf_tag(e->b, 'n', NULL, 0);
        break;
    case LUA_TBOOLEAN:
        r = buf_tag(e->b, lua_toboolean(L, idx) ? 't' : 'f', NULL, 0);
        break;
    case LUA_TNUMBER:
        r = encode_number(L, idx, e);
        break;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        r = buf_tag(e->b, 's', &len, sizeof len) < 0 || buf_put(e->b, s, len) < 0 ? -1 : 0;
        break;
    case LUA_TTABLE:
        return encode_table(L, idx, e);
    default:
        e->why = lua_type(L, idx) == LUA_TFUNCTION ? "a function" : lua_type(L, idx) == LUA_TTHREAD
               ? "a thread (coroutine)" : "a userdata";
        return -1;
    }
    if (r < 0)
        e->why = "a value (not enough memory)";
    return r;
}


/* ------------------------------------------------------------ decoding */

/* push the value at *p (the encoder wrote it); advances *p */
/* NOLINTNEXTLINE(misc-no-recursion): nesting is bounded by MAX_DEPTH */
static void decode(lua_State *L, const char **p) {
    char tag = *(*p)++;
    size_t len;
    luaL_checkstack(L, 3, "copying a value");
    switch (tag) {
    case 'n': lua_pushnil(L); break;
    case 't': lua_pushboolean(L, 1); break;
    case 'f': lua_pushboolean(L, 0); break;
#if LUA_VERSION_NUM >= 503
    case 'i': {
        lua_Integer i;
        memcpy(&i, *p, sizeof i);
        *p += sizeof i;
        lua_pushinteger(L, i);
        break;
    }
#endif
    case 'd': {
        lua_Number d;
        memcpy(&d, *p, sizeof d);
        *p += sizeof d;
        lua_pushnumber(L, d);
        break;
    }
    case 's':
        memcpy(&len, *p, sizeof len);
        lua_pushlstring(L, *p + sizeof len, len);
        *p += sizeof len + len;
        break;
    default:                    /* '{' */
        lua_newtable(L);
        while (**p != '}') {
            decode(L, p);
            decode(L, p);
            lua_rawset(L, -3);
        }
        (*p)++;
    }
}


/* push every value in b; their number */
static int decode_all(lua_State *L, const struct buf *b) {
    const char *p = b->data, *end = b->data + b->len;
    int n = 0;
    while (p < end) {
        decode(L, &p);
        n++;
    }
    return n;
}


/* -------------------------------------------------------- worker side */

static int traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
#if LUA_VERSION_NUM >= 502 || defined(LUA_JITLIBNAME)
    luaL_traceback(L, L, msg, 1);
#else
    lua_getglobal(L, "debug");
    lua_getfield(L, -1, "traceback");
    lua_pushstring(L, msg);
    lua_pushinteger(L, 2);
    lua_call(L, 2, 1);
#endif
    return 1;
}


static void set_package(lua_State *L, const char *field, const char *value) {
    if (value == NULL)
        return;
    lua_getglobal(L, "package");
    lua_pushstring(L, value);
    lua_setfield(L, -2, field);
    lua_pop(L, 1);
}


/* protected: open the libraries, copy the paths, run the init chunk */
static int l_setup(lua_State *L) {
    const struct conf *c = lua_touserdata(L, 1);
    luaL_openlibs(L);
    set_package(L, "path", c->path);
    set_package(L, "cpath", c->cpath);
    if (c->init.len == 0)
        return 0;
    lua_pushcfunction(L, traceback);
    if (luaL_loadbuffer(L, c->init.data, c->init.len, "=init") != LUA_OK
        || lua_pcall(L, 0, 0, -2) != LUA_OK)
        return lua_error(L);
    return 0;
}


/* protected: run the job; on return j->res holds results or a message */
static int l_runjob(lua_State *L) {
    struct lua_job *j = lua_touserdata(L, 1);
    struct enc e = { 0 };
    int nargs, i, top;
    lua_pushcfunction(L, traceback);            /* j tb */
    if (luaL_loadbuffer(L, j->code.data, j->code.len, "=job") != LUA_OK)
        return lua_error(L);
    nargs = decode_all(L, &j->args);            /* j tb fn args... */
    if (lua_pcall(L, nargs, LUA_MULTRET, 2) != LUA_OK)
        return lua_error(L);
    e.b = &j->res;
    top = lua_gettop(L);
    for (i = 3; i <= top; i++)
        if (encode(L, i, &e) < 0)
            return luaL_error(L, "cannot copy result #%d (%s)", i - 2, e.why);
    j->ok = 1;
    return 0;
}


/* the message at the top of L becomes the job's only result */
static void fail(lua_State *L, struct lua_job *j) {
    struct enc e = { 0 };
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushliteral(L, "worker: error object is not a string");
    }
    j->ok = 0;
    j->res.len = 0;
    e.b = &j->res;
    encode(L, lua_gettop(L), &e);
}


static lua_State *new_state(struct lua_job *j) {
    lua_State *L = luaL_newstate();
    if (L == NULL)
        return NULL;
    lua_pushcfunction(L, l_setup);
    lua_pushlightuserdata(L, (void *)j->conf);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        lua_pushfstring(L, "worker init failed: %s", lua_tostring(L, -1));
        fail(L, j);
        lua_close(L);
        return NULL;
    }
    return L;
}


static void run_lua_job(struct cps_job *job, void **ctx) {
    struct lua_job *j = (struct lua_job *)job;
    lua_State *L = *ctx;
    if (L == NULL && (L = *ctx = new_state(j)) == NULL)
        return;                                 /* ok = 0, message set */
    lua_pushcfunction(L, l_runjob);
    lua_pushlightuserdata(L, j);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK)
        fail(L, j);
    lua_settop(L, 0);
}


static void destroy_lua_job(struct cps_job *job) {
    struct lua_job *j = (struct lua_job *)job;
    free(j->code.data);
    free(j->args.data);
    free(j->res.data);
    free(j);
}


static void close_state(void *ctx) {
    lua_close(ctx);
}


/* ---------------------------------------------------------- loop side */

static struct pool_ud *check_pool(lua_State *L) {
    struct pool_ud *u = luaL_checkudata(L, 1, POOL_MT);
    if (u->pool == NULL)
        luaL_error(L, "copas worker pool is shut down");
    return u;
}


/* a box on the stack, holding nothing yet */
static struct box *new_box(lua_State *L) {
    struct box *bx = lua_newuserdata(L, sizeof *bx);
    bx->job = NULL;
    luaL_getmetatable(L, BOX_MT);
    lua_setmetatable(L, -2);
    return bx;
}


static int l_box_gc(lua_State *L) {
    struct box *bx = luaL_checkudata(L, 1, BOX_MT);
    if (bx->job != NULL)
        bx->job->destroy(bx->job);
    bx->job = NULL;
    return 0;
}


/* the function at idx may travel: a Lua function whose only upvalue, if
   any, is _ENV; `what` starts the error message */
static void check_job_function(lua_State *L, int idx, const char *what) {
    const char *name;
    int i;
    if (lua_type(L, idx) != LUA_TFUNCTION)
        luaL_error(L, "%s (function expected, got %s)", what, luaL_typename(L, idx));
    if (lua_iscfunction(L, idx))
        luaL_error(L, "%s (a C function cannot run in a worker)", what);
    for (i = 1; (name = lua_getupvalue(L, idx, i)) != NULL; i++) {
        lua_pop(L, 1);
        if (strcmp(name, "_ENV") != 0)
            luaL_error(L, "%s (function has upvalue '%s'; "
                       "a worker function may only use globals and its arguments)", what, name);
    }
}


/* bytecode of the function at idx into b; raises on failure */
static void dump(lua_State *L, int idx, struct buf *b) {
    lua_pushvalue(L, idx);
    if (cps_dump(L, dump_writer, b) != 0 || b->len == 0)
        luaL_error(L, "cannot dump the job function (not enough memory)");
    lua_pop(L, 1);
}


/* a job for the function at 2 and the arguments above it, anchored by
   the box *bx pushed on the stack; raises on what cannot be copied */
static struct lua_job *new_lua_job(lua_State *L, struct pool_ud *u, struct box **out) {
    int top = lua_gettop(L), i;
    struct box *bx = *out = new_box(L);
    struct enc e = { 0 };
    struct lua_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        luaL_error(L, "not enough memory");
    j->job.run = run_lua_job;
    j->job.destroy = destroy_lua_job;
    j->conf = u->conf;
    bx->job = &j->job;
    dump(L, 2, &j->code);
    e.b = &j->args;
    for (i = 3; i <= top; i++)
        if (encode(L, i, &e) < 0)
            luaL_error(L, "bad argument #%d to 'run' (cannot copy %s)", i - 1, e.why);
    return j;
}


/* pool:run(fn, ...) -> job id; raises on a bad function or argument */
static int l_pool_run(lua_State *L) {
    struct pool_ud *u = check_pool(L);
    struct lua_job *j;
    struct box *bx;
    unsigned long id;
    check_job_function(L, 2, "bad argument #1 to 'run'");
    j = new_lua_job(L, u, &bx);
    if ((id = cps_pool_submit(u->pool, &j->job)) == 0)
        return luaL_error(L, "copas worker pool is shut down");
    bx->job = NULL;                             /* the pool owns it now */
    lua_pushnumber(L, (lua_Number)id);
    return 1;
}


static const char *const families[] = { "unspec", "inet", "inet6", NULL };


/* pool:resolve(host[, family]) -> job id */
static int l_pool_resolve(lua_State *L) {
    struct pool_ud *u = check_pool(L);
    size_t len;
    const char *host = luaL_checklstring(L, 2, &len);
    int family = luaL_checkoption(L, 3, "unspec", families);
    struct cps_resolve *r;
    unsigned long id;
    luaL_argcheck(L, len <= CPS_HOST_MAX, 2, "host name longer than 255 bytes");
    luaL_argcheck(L, strlen(host) == len, 2, "host name contains a zero byte");
    if ((r = cps_resolve_new(host, family)) == NULL)
        return luaL_error(L, "not enough memory");
    if ((id = cps_pool_submit(u->pool, &r->job)) == 0) {
        r->job.destroy(&r->job);
        return luaL_error(L, "copas worker pool is shut down");
    }
    lua_pushnumber(L, (lua_Number)id);
    return 1;
}


/* true, {{family=, addr=}, ...} | false, message */
static int push_lookup(lua_State *L, const struct cps_resolve *r) {
    size_t i;
    const char *err = cps_resolve_strerror(r);
    lua_pushboolean(L, err == NULL);
    if (err != NULL) {
        lua_pushstring(L, err);
        return 2;
    }
    lua_createtable(L, (int)r->naddrs, 0);
    for (i = 0; i < r->naddrs; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, families[r->addrs[i].family]);
        lua_setfield(L, -2, "family");
        lua_pushstring(L, r->addrs[i].text);
        lua_setfield(L, -2, "addr");
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 2;
}


/* pool:take() -> id, true, results... | id, false, message | nothing */
static int l_pool_take(lua_State *L) {
    struct pool_ud *u = check_pool(L);
    struct box *bx;
    struct cps_resolve *r;
    lua_settop(L, 1);
    bx = new_box(L);                            /* reserve before taking */
    if ((bx->job = cps_pool_take(u->pool)) == NULL)
        return 0;
    lua_pushnumber(L, (lua_Number)bx->job->id);
    if ((r = cps_resolve_of(bx->job)) != NULL) {
        push_lookup(L, r);
    } else {
        struct lua_job *j = (struct lua_job *)bx->job;
        lua_pushboolean(L, j->ok);
        decode_all(L, &j->res);
    }
    bx->job->destroy(bx->job);
    bx->job = NULL;
    return lua_gettop(L) - 2;
}


/* pool:cancel(id) -> true when the pool still had the job */
static int l_pool_cancel(lua_State *L) {
    struct pool_ud *u = check_pool(L);
    lua_Number id = luaL_checknumber(L, 2);
    lua_pushboolean(L, id >= 1 && cps_pool_cancel(u->pool, (unsigned long)id));
    return 1;
}


static int l_pool_getfd(lua_State *L) {
    lua_pushinteger(L, cps_pool_fd(check_pool(L)->pool));
    return 1;
}


/* pool:close(): copas.removeall() closes what its threads waited on;
   for a pool that means: forget every job. The pool stays usable. */
static int l_pool_close(lua_State *L) {
    cps_pool_cancel_all(check_pool(L)->pool);
    lua_pushboolean(L, 1);
    return 1;
}


static int l_pool_size(lua_State *L) {
    lua_pushinteger(L, cps_pool_size(check_pool(L)->pool));
    return 1;
}


static void free_conf(struct conf *c) {
    if (c == NULL)
        return;
    free(c->path);
    free(c->cpath);
    free(c->init.data);
    free(c);
}


/* pool:shutdown(): running jobs end, threads are joined; also __gc */
static int l_pool_shutdown(lua_State *L) {
    struct pool_ud *u = luaL_checkudata(L, 1, POOL_MT);
    cps_pool_free(u->pool);
    free_conf(u->conf);
    u->pool = NULL;
    u->conf = NULL;
    return 0;
}


/* copy the string field `name` of the options at idx, or NULL */
static char *opt_string(lua_State *L, int idx, const char *name) {
    size_t len;
    const char *s;
    char *copy;
    lua_getfield(L, idx, name);
    if (lua_isnil(L, -1))
        return lua_pop(L, 1), NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "bad option '%s' (string expected, got %s)", name, luaL_typename(L, -1));
    s = lua_tolstring(L, -1, &len);
    if ((copy = malloc(len + 1)) == NULL)
        luaL_error(L, "not enough memory");
    memcpy(copy, s, len + 1);
    lua_pop(L, 1);
    return copy;
}


/* the init option: source text, or a function as bytecode */
static void opt_init(lua_State *L, int idx, struct buf *b) {
    lua_getfield(L, idx, "init");
    if (lua_type(L, -1) == LUA_TFUNCTION) {
        check_job_function(L, lua_gettop(L), "bad option 'init'");
        dump(L, lua_gettop(L), b);
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (buf_put(b, s, len) < 0)
            luaL_error(L, "not enough memory");
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "bad option 'init' (string or function expected, got %s)", luaL_typename(L, -1));
    }
    lua_pop(L, 1);
}


/* core.pool_new(nthreads[, {path=, cpath=, init=}]) -> pool */
static int l_pool_new(lua_State *L) {
    lua_Number n = luaL_checknumber(L, 1);
    struct pool_ud *u;
    int err;
    luaL_argcheck(L, n >= 1 && n <= MAX_THREADS && n == (int)n, 1,
                  "number of threads must be an integer from 1 to 1024");
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    u = lua_newuserdata(L, sizeof *u);          /* born empty: __gc is safe */
    u->pool = NULL;
    u->conf = NULL;
    luaL_getmetatable(L, POOL_MT);
    lua_setmetatable(L, -2);
    if ((u->conf = calloc(1, sizeof *u->conf)) == NULL)
        return luaL_error(L, "not enough memory");
    if (lua_istable(L, 2)) {
        u->conf->path = opt_string(L, 2, "path");
        u->conf->cpath = opt_string(L, 2, "cpath");
        opt_init(L, 2, &u->conf->init);
    }
    if ((err = cps_pool_new(&u->pool, (int)n, close_state)) < 0)
        return luaL_error(L, "cannot start worker threads: %s", strerror(-err));
    return 1;
}


static int l_pool_cpus(lua_State *L) {
    lua_pushinteger(L, cps_pool_cpus());
    return 1;
}


/* core.addr_literal(host) -> "inet" | "inet6" | nil */
static int l_addr_literal(lua_State *L) {
    int family = cps_resolve_literal(luaL_checkstring(L, 1));
    if (family == CPS_FAMILY_UNSPEC)
        return 0;
    lua_pushstring(L, families[family]);
    return 1;
}


static const luaL_Reg pool_methods[] = {
    { "run", l_pool_run }, { "resolve", l_pool_resolve }, { "take", l_pool_take },
    { "cancel", l_pool_cancel }, { "getfd", l_pool_getfd }, { "close", l_pool_close },
    { "size", l_pool_size }, { "shutdown", l_pool_shutdown }, { NULL, NULL }
};

static const luaL_Reg functions[] = {
    { "pool_new", l_pool_new }, { "pool_cpus", l_pool_cpus },
    { "addr_literal", l_addr_literal }, { NULL, NULL }
};


/* adds pool_new, pool_cpus and addr_literal to the table at the top */
int cps_bind_pool_open(lua_State *L) {
    luaL_newmetatable(L, POOL_MT);              /* mt */
    lua_newtable(L);                            /* mt methods */
    luaL_setfuncs(L, pool_methods, 0);
    lua_setfield(L, -2, "__index");             /* mt */
    lua_pushcfunction(L, l_pool_shutdown);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, BOX_MT);
    lua_pushcfunction(L, l_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_setfuncs(L, functions, 0);
    return 1;
}
