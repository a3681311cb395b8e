/*
** poller_select.c: the select() backend, the last resort. A descriptor
** at or above FD_SETSIZE is refused with -ERANGE (never written past the
** fd_set). A descriptor closed behind our back makes select() fail with
** EBADF; then each watched descriptor is checked and the dead ones are
** reported as fired, so their waiters wake and meet "closed".
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include "poller.h"

struct cps_poller {
    fd_set rd, wr;
    unsigned mask[FD_SETSIZE];
    int maxfd;
};


static int create(struct cps_poller **out) {
    struct cps_poller *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -ENOMEM;
    FD_ZERO(&p->rd);
    FD_ZERO(&p->wr);
    p->maxfd = -1;
    *out = p;
    return 0;
}


static int watch(struct cps_poller *p, int fd, unsigned old, unsigned events) {
    (void)old;
    if (fd < 0)
        return -EBADF;
    if (fd >= FD_SETSIZE)
        return -ERANGE;
    if (events & CPS_READ) FD_SET(fd, &p->rd); else FD_CLR(fd, &p->rd);
    if (events & CPS_WRITE) FD_SET(fd, &p->wr); else FD_CLR(fd, &p->wr);
    p->mask[fd] = events;
    if (fd > p->maxfd)
        p->maxfd = fd;
    return 0;
}


static void unwatch(struct cps_poller *p, int fd) {
    if (fd < 0 || fd >= FD_SETSIZE)
        return;
    FD_CLR(fd, &p->rd);
    FD_CLR(fd, &p->wr);
    p->mask[fd] = 0;
    while (p->maxfd >= 0 && p->mask[p->maxfd] == 0)
        p->maxfd--;
}


static int dead_ones(struct cps_poller *p, struct cps_fired *out, int max) {
    int fd, k = 0;
    for (fd = 0; fd <= p->maxfd && k < max; fd++) {
        if (p->mask[fd] && fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            out[k].fd = fd;
            out[k].events = CPS_READ | CPS_WRITE;
            k++;
        }
    }
    return k;
}


static int wait_events(struct cps_poller *p, struct cps_fired *out, int max,
                       const struct timespec *timeout) {
    fd_set rd = p->rd, wr = p->wr;
    int n, fd, k = 0;
    n = pselect(p->maxfd + 1, &rd, &wr, NULL, timeout, NULL);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        if (errno == EBADF)
            return dead_ones(p, out, max);
        return -errno;
    }
    for (fd = 0; fd <= p->maxfd && k < max && n > 0; fd++) {
        unsigned e = (FD_ISSET(fd, &rd) ? CPS_READ : 0) | (FD_ISSET(fd, &wr) ? CPS_WRITE : 0);
        if (e == 0)
            continue;
        n -= (e == (CPS_READ | CPS_WRITE)) ? 2 : 1;
        out[k].fd = fd;
        out[k].events = e;
        k++;
    }
    return k;
}


static void destroy(struct cps_poller *p) {
    free(p);
}


const struct cps_poller_ops cps_poller_select = {
    "select", create, watch, unwatch, wait_events, destroy
};
