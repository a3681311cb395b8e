/*
** lsock.h: LuaSocket's TCP client object, read and written in place.
**
** A line receive through the object's method costs about 2 300
** instructions and a send about 900: the method lookup, the class check,
** a clock read for a timeout that is zero, and a line assembled one
** character at a time. On an echo server that is a third of the user time
** per round trip. For an object of LuaSocket's TCP client class whose
** layout is recognised (below), copas.receive and copas.send do the same
** work here: the buffer bookkeeping of LuaSocket's buffer.c, over the
** object's own I/O driver (its recv, send and error functions, called
** through the pointers the object holds), so system calls, error handling
** and error messages stay LuaSocket's. Results, buffer contents and byte
** counters (getstats) are those the methods would give.
**
** The layout is LuaSocket's (tcp.h, io.h, buffer.h, timeout.h, since 2.0;
** `family` since 3.0). An object is taken only when its size is that of
** the layout and its three self-pointers (the driver's context, the
** buffer's driver and the buffer's timeout) point where the layout puts
** them, and only while its LuaSocket timeout is zero, as Copas sets it:
** then LuaSocket itself never waits, and neither does this.
*/
#ifndef CPS_LSOCK_H
#define CPS_LSOCK_H

#include <stddef.h>

#include <lua.h>

#define CPS_LSOCK_BUFSIZE 8192      /* LuaSocket's BUF_SIZE */

struct cps_lsock {
    int sock;
    struct {
        void *ctx;
        int (*send)(void *ctx, const char *data, size_t count, size_t *sent, void *tm);
        int (*recv)(void *ctx, char *data, size_t count, size_t *got, void *tm);
        const char *(*error)(void *ctx, int err);
    } io;
    struct {
        /* cppcheck-suppress unusedStructMember */
        double birthday;
        size_t sent, received;
        void *io;
        void *tm;
        size_t first, last;
        char data[CPS_LSOCK_BUFSIZE];
    } buf;
    struct {
        double block;
        /* cppcheck-suppress unusedStructMember */
        double total, start;
    } tm;
    /* cppcheck-suppress unusedStructMember */
    int family;
};

/* the userdata at idx as LuaSocket's TCP client, or NULL when its layout
   is not recognised; the caller knows its class is "tcp{client}". An
   object's layout does not change while it lives. */
struct cps_lsock *cps_lsock_layout(lua_State *L, int idx);

/* 1 while its LuaSocket timeout is zero: only then is it worked in place */
static inline int cps_lsock_nonblocking(const struct cps_lsock *t) {
    return t->tm.block == 0.0;
}

/* 1 if its receive buffer holds data (what dirty() answers) */
static inline int cps_lsock_buffered(const struct cps_lsock *t) {
    return t->buf.first < t->buf.last;
}

/* push what t:receive(pattern, prefix) returns (data, err, partial) and
   return 1, the pattern at index pat nil (a line) or a number, the prefix
   at index prefix nil or a string; 0, with nothing done, for a number
   LuaSocket would not convert cleanly (negative, huge) */
int cps_lsock_receive(lua_State *L, struct cps_lsock *t, int pat, int prefix);

/* push what t:send(s, i, j) returns (last, err, last sent) and return 1,
   for the `size` bytes at s (j = -1 for a nil j); 0, with nothing done,
   for an i or j out of range */
int cps_lsock_send(lua_State *L, struct cps_lsock *t, const char *s, size_t size, double i, double j);

#endif
