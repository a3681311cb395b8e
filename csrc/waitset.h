/*
** waitset.h: per descriptor, a FIFO of threads waiting to read and one
** waiting to write, whether it is a server socket, the socket object it
** belongs to (its identity: a reused descriptor number with another
** socket is detected, never confused) and the interest the kernel has.
** Interest is changed lazily: entries whose wanted directions may differ
** from the kernel's are listed as changed and settled once before each
** wait, so a thread that waits again on the same socket costs no syscall.
** Plain C, no Lua: identity is an opaque pointer.
*/
#ifndef CPS_WAITSET_H
#define CPS_WAITSET_H

#include "queue.h"

struct cps_fdent {
    struct cps_link readers, writers;   /* threads, through their link */
    const void *owner;                  /* the claiming object, when the loop
                                           marked it as its own (loop.c) */
    unsigned kmask;                     /* what the kernel watches */
    unsigned char server;               /* server socket: always wants READ */
    unsigned char changed;              /* listed in the change list */
    unsigned char claimed;              /* a socket owns it; which one is in
                                           the loop's weak fd -> socket table */
    unsigned char mark;                 /* the owner's mark, kept for the
                                           Lua layer (bind_io.c); 0: none */
};

struct cps_waitset {
    struct cps_fdent **ents;            /* by descriptor, allocated on use */
    int cap;
    int *changed;                       /* descriptors to settle */
    int nchanged;
};

void cps_waitset_init(struct cps_waitset *ws);
void cps_waitset_free(struct cps_waitset *ws);

/* the entry of fd, made on first use: NULL on -ENOMEM or fd < 0 */
struct cps_fdent *cps_waitset_get(struct cps_waitset *ws, int fd);

/* the entry of fd if it exists */
static inline struct cps_fdent *cps_waitset_find(const struct cps_waitset *ws, int fd) {
    return (fd >= 0 && fd < ws->cap) ? ws->ents[fd] : 0;
}

/* directions somebody waits for */
unsigned cps_waitset_wanted(const struct cps_fdent *e);

/* list fd as changed (cannot fail: room was made when it was created) */
void cps_waitset_mark(struct cps_waitset *ws, int fd);

#endif
