/* lsock.c: LuaSocket's TCP client object read and written in place; see
   lsock.h. The steps are those of LuaSocket's buffer.c: a receive takes
   what the buffer holds and reads the socket only when the buffer is
   empty, a line drops every '\r' and ends at '\n' (consumed), a send goes
   out in steps of at most 8 KiB. */
#include <string.h>

#include "compat.h"
#include "lsock.h"

#define IO_DONE 0                   /* LuaSocket's io.h */
#define STEPSIZE 8192               /* LuaSocket's buffer.c */

/* the numbers a receive or send converts with a C cast, as LuaSocket
   does, where that cast is defined */
#define FITS(d) ((d) > -1e18 && (d) < 1e18)


struct cps_lsock *cps_lsock_layout(lua_State *L, int idx) {
    struct cps_lsock *t;
    if (lua_type(L, idx) != LUA_TUSERDATA || cps_rawlen(L, idx) != sizeof *t)
        return NULL;
    t = lua_touserdata(L, idx);
    if (t->io.ctx != (const void *)&t->sock || t->buf.io != (const void *)&t->io
        || t->buf.tm != (const void *)&t->tm)
        return NULL;
    return t;
}


/* what the buffer holds, reading the socket first if it holds nothing */
static int get(struct cps_lsock *t, const char **data, size_t *count) {
    int err = IO_DONE;
    if (t->buf.first >= t->buf.last) {
        size_t got = 0;
        err = t->io.recv(t->io.ctx, t->buf.data, CPS_LSOCK_BUFSIZE, &got, t->buf.tm);
        t->buf.first = 0;
        t->buf.last = got;
    }
    *count = t->buf.last - t->buf.first;
    *data = t->buf.data + t->buf.first;
    return err;
}


static void skip(struct cps_lsock *t, size_t n) {
    t->buf.received += n;
    t->buf.first += n;
    if (t->buf.first >= t->buf.last)
        t->buf.first = t->buf.last = 0;
}


/* add n bytes of a line to b without its '\r's */
static void add_line(luaL_Buffer *b, const char *p, size_t n) {
    for (;;) {
        const char *cr = memchr(p, '\r', n);
        size_t k = cr ? (size_t)(cr - p) : n;
        luaL_addlstring(b, p, k);
        if (cr == NULL)
            return;
        p += k + 1;
        n -= k + 1;
    }
}


/* the rest of a line into b, starting with what get answered */
static int line(struct cps_lsock *t, luaL_Buffer *b, int err, const char *data, size_t count) {
    for (;;) {
        const char *nl = memchr(data, '\n', count);
        size_t n = nl ? (size_t)(nl - data) : count;
        add_line(b, data, n);
        skip(t, nl ? n + 1 : n);
        if (nl || err != IO_DONE)
            return err;
        err = get(t, &data, &count);
    }
}


/* `wanted` bytes into b */
static int raw(struct cps_lsock *t, luaL_Buffer *b, size_t wanted) {
    size_t total = 0;
    for (;;) {
        const char *data;
        size_t count;
        int err = get(t, &data, &count);
        if (count > wanted - total)
            count = wanted - total;
        luaL_addlstring(b, data, count);
        skip(t, count);
        total += count;
        if (err != IO_DONE || total >= wanted)
            return err;
    }
}


/* the result string is at the top: make the three results */
static void results(lua_State *L, struct cps_lsock *t, int err) {
    if (err == IO_DONE) {
        lua_pushnil(L);
        lua_pushnil(L);
    } else {
        lua_pushstring(L, t->io.error(t->io.ctx, err));
        lua_pushvalue(L, -2);
        lua_pushnil(L);
        lua_replace(L, -4);
    }
}


int cps_lsock_receive(lua_State *L, struct cps_lsock *t, int pat, int prefix) {
    size_t size = 0;
    const char *part = "";
    luaL_Buffer b;
    int err;
    if (!lua_isnil(L, prefix) && (part = lua_tolstring(L, prefix, &size)) == NULL)
        return 0;                       /* the method raises the error */
    if (lua_type(L, pat) == LUA_TNUMBER) {
        double n = lua_tonumber(L, pat);
        if (!(n >= 0 && FITS(n)))
            return 0;
        luaL_buffinit(L, &b);
        luaL_addlstring(&b, part, size);
        err = size == 0 || (size_t)n > size ? raw(t, &b, (size_t)n - size) : IO_DONE;
    } else {
        const char *data, *nl;
        size_t count;
        err = get(t, &data, &count);
        /* the common case: the whole line is there, with no '\r' but
           perhaps the one that ends it */
        if (size == 0 && (nl = memchr(data, '\n', count)) != NULL) {
            size_t n = (size_t)(nl - data);
            size_t k = n > 0 && data[n - 1] == '\r' ? n - 1 : n;
            if (memchr(data, '\r', k) == NULL) {
                lua_pushlstring(L, data, k);
                skip(t, n + 1);
                results(L, t, IO_DONE);
                return 1;
            }
        }
        luaL_buffinit(L, &b);
        luaL_addlstring(&b, part, size);
        err = line(t, &b, err, data, count);
    }
    luaL_pushresult(&b);
    results(L, t, err);
    return 1;
}


int cps_lsock_send(lua_State *L, struct cps_lsock *t, const char *s, size_t size, double i, double j) {
    size_t sent = 0;
    long start, end;
    int err = IO_DONE;
    if (!FITS(i) || !FITS(j))
        return 0;
    start = (long)i;
    end = (long)j;
    if (start < 0)
        start = (long)size + start + 1;
    if (end < 0)
        end = (long)size + end + 1;
    if (start < 1)
        start = 1;
    if (end > (long)size)
        end = (long)size;
    if (start <= end) {
        size_t count = (size_t)(end - start + 1);
        const char *p = s + start - 1;
        while (sent < count && err == IO_DONE) {
            size_t done = 0, step = count - sent <= STEPSIZE ? count - sent : STEPSIZE;
            err = t->io.send(t->io.ctx, p + sent, step, &done, t->buf.tm);
            sent += done;
        }
        t->buf.sent += sent;
    }
    if (err == IO_DONE) {
        lua_pushnumber(L, (lua_Number)sent + (lua_Number)start - 1);
        lua_pushnil(L);
        lua_pushnil(L);
    } else {
        lua_pushnil(L);
        lua_pushstring(L, t->io.error(t->io.ctx, err));
        lua_pushnumber(L, (lua_Number)sent + (lua_Number)start - 1);
    }
    return 1;
}
