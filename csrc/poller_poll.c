/*
** poller_poll.c: the portable poll() backend. A dense pollfd array plus
** an fd -> slot map; removal moves the last slot into the hole.
*/
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "poller.h"

struct cps_poller {
    struct pollfd *fds;
    int len, cap;
    int *slot;          /* fd -> index in fds, -1 when not watched */
    int slot_cap;
};


static int create(struct cps_poller **out) {
    struct cps_poller *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -ENOMEM;
    *out = p;
    return 0;
}


static int grow_slots(struct cps_poller *p, int fd) {
    int cap = p->slot_cap ? p->slot_cap : 64, i;
    int *slot;
    while (cap <= fd)
        cap *= 2;
    slot = realloc(p->slot, (size_t)cap * sizeof *slot);
    if (slot == NULL)
        return -ENOMEM;
    for (i = p->slot_cap; i < cap; i++)
        slot[i] = -1;
    p->slot = slot;
    p->slot_cap = cap;
    return 0;
}


static short to_poll(unsigned events) {
    return (short)(((events & CPS_READ) ? POLLIN : 0) | ((events & CPS_WRITE) ? POLLOUT : 0));
}


static int watch(struct cps_poller *p, int fd, unsigned old, unsigned events) {
    int err;
    (void)old;
    if (fd < 0)
        return -EBADF;
    if (fd >= p->slot_cap && (err = grow_slots(p, fd)) < 0)
        return err;
    if (p->slot[fd] < 0) {
        if (p->len == p->cap) {
            int cap = p->cap ? p->cap * 2 : 64;
            struct pollfd *fds = realloc(p->fds, (size_t)cap * sizeof *fds);
            if (fds == NULL)
                return -ENOMEM;
            p->fds = fds;
            p->cap = cap;
        }
        p->slot[fd] = p->len++;
        p->fds[p->slot[fd]].fd = fd;
    }
    p->fds[p->slot[fd]].events = to_poll(events);
    p->fds[p->slot[fd]].revents = 0;
    return 0;
}


static void unwatch(struct cps_poller *p, int fd) {
    int i;
    if (fd < 0 || fd >= p->slot_cap || (i = p->slot[fd]) < 0)
        return;
    p->slot[fd] = -1;
    if (i != --p->len) {
        p->fds[i] = p->fds[p->len];
        p->slot[p->fds[i].fd] = i;
    }
}


static int wait_events(struct cps_poller *p, struct cps_fired *out, int max,
                       const struct timespec *timeout) {
    int n, i, k = 0;
#ifdef __linux__
    n = ppoll(p->fds, (nfds_t)p->len, timeout, NULL);
#else
    n = poll(p->fds, (nfds_t)p->len, cps_poller_ms(timeout));
#endif
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (i = 0; i < p->len && k < max && n > 0; i++) {
        short e = p->fds[i].revents;
        if (e == 0)
            continue;
        n--;
        out[k].fd = p->fds[i].fd;
        out[k].events = 0;
        /* POLLNVAL: closed behind our back; the waiter will see "closed" */
        if (e & (POLLIN | POLLERR | POLLHUP | POLLNVAL))
            out[k].events |= CPS_READ;
        if (e & (POLLOUT | POLLERR | POLLHUP | POLLNVAL))
            out[k].events |= CPS_WRITE;
        k++;
    }
    return k;
}


static void destroy(struct cps_poller *p) {
    free(p->fds);
    free(p->slot);
    free(p);
}


const struct cps_poller_ops cps_poller_poll = {
    "poll", create, watch, unwatch, wait_events, destroy
};
