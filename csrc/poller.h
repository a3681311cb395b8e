/*
** poller.h: the seam between the dispatcher and the kernel's readiness
** interface. Each backend (poller_epoll.c, poller_poll.c, poller_select.c)
** keeps its functions static and exports one ops table. Backends only
** translate: errors and hang-ups become READ|WRITE so the waiter meets the
** condition in its own read or write; EINTR is zero events. Timeouts are
** exact to the nanosecond where the kernel call takes them (ppoll,
** pselect, epoll_pwait2); a backend that only has milliseconds rounds up,
** so nothing fires early.
*/
#ifndef CPS_POLLER_H
#define CPS_POLLER_H

#include <limits.h>
#include <time.h>

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
    /* fill out[0..max): count, or -errno; a NULL timeout blocks */
    int (*wait)(struct cps_poller *p, struct cps_fired *out, int max,
                const struct timespec *timeout);
    void (*destroy)(struct cps_poller *p);
};

/* a timeout in whole milliseconds, rounded up, for the calls that take no
   timespec; -1 for none */
static inline int cps_poller_ms(const struct timespec *t) {
    if (t == NULL)
        return -1;
    if (t->tv_sec >= INT_MAX / 1000 - 1)
        return INT_MAX;
    return (int)t->tv_sec * 1000 + (int)((t->tv_nsec + 999999) / 1000000);
}

extern const struct cps_poller_ops cps_poller_epoll;
extern const struct cps_poller_ops cps_poller_poll;
extern const struct cps_poller_ops cps_poller_select;

/* backend by name ("epoll", "poll", "select"), NULL name = build default;
   NULL when unknown or not built on this system */
const struct cps_poller_ops *cps_poller_find(const char *name);

#endif
