/*
** sockfd.h: the descriptor of a socket object. Asking the object
** (a protected call of its getfd method) costs over a thousand
** instructions, about a twentieth of an echo round trip, and the core asks
** at every wait. LuaSocket's and LuaSec's objects keep their descriptor as
** the first member of the userdata (t_socket sock, an int on POSIX: tcp.h,
** udp.h, ssl.h), so for their classes the descriptor is read from there.
** A class is trusted only after getfd and that int agreed on one of its
** objects; anything else always goes through getfd.
*/
#ifndef CPS_SOCKFD_H
#define CPS_SOCKFD_H

#include <lua.h>

#define CPS_FDCLASSES_MAX 8

/* metatables of the classes whose descriptor is read directly */
struct cps_fdclasses {
    const void *mt[CPS_FDCLASSES_MAX];
    unsigned char tcp_client[CPS_FDCLASSES_MAX];    /* LuaSocket's "tcp{client}" */
    int n;
};

void cps_fdclasses_init(struct cps_fdclasses *c);

/* the descriptor of the socket at idx, or -1 (closed, no getfd, getfd
   raised or returned something else than a number) */
int cps_sockfd(lua_State *L, struct cps_fdclasses *c, int idx);

/* the trusted class of the userdata at idx (an index into c), or -1; a
   LuaSocket or LuaSec object of such a class reads a line for a nil
   receive pattern as for "*l" */
int cps_sockfd_class(lua_State *L, const struct cps_fdclasses *c, int idx);

#endif
