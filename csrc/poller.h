/*
** poller.h: the seam between the dispatcher and the kernel's readiness
** interface. Each backend (poller_epoll.c, poller_poll.c, poller_select.c)
** keeps its functions static and exports one ops table. Backends only
** translate: errors and hang-ups become READ|WRITE so the waiter meets the
** condition in its own read or write; EINTR is zero events; milliseconds
** are rounded up by the caller so nothing fires early.
*/
#ifndef CPS_POLLER_H
#define CPS_POLLER_H

#define CPS_READ  1u
#define CPS_WRITE 2u

struct cps_fired {
    int fd;
    unsigned events;    /* CPS_READ | CPS_WRITE */
};

struct cps_poller;      /* private to each backend */

struct cps_poller_ops {
    const char *name;
    /* 0 or -errno */
    int (*create)(struct cps_poller **out);
    /* change interest of fd from `old` to `events` (both non-zero or
       old == 0 for a new descriptor): 0 or -errno */
    int (*watch)(struct cps_poller *p, int fd, unsigned old, unsigned events);
    /* forget fd; errors for a descriptor already closed are ignored */
    void (*unwatch)(struct cps_poller *p, int fd);
    /* fill out[0..max): count, or -errno; timeout_ms < 0 blocks */
    int (*wait)(struct cps_poller *p, struct cps_fired *out, int max, int timeout_ms);
    void (*destroy)(struct cps_poller *p);
};

extern const struct cps_poller_ops cps_poller_epoll;
extern const struct cps_poller_ops cps_poller_poll;
extern const struct cps_poller_ops cps_poller_select;

/* backend by name ("epoll", "poll", "select"), NULL name = build default;
   NULL when unknown or not built on this system */
const struct cps_poller_ops *cps_poller_find(const char *name);

#endif
