/* poller_epoll.c: the Linux backend. Level-triggered; see poller.h. */
#ifdef __linux__

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "poller.h"

#define BATCH 1024

/* epoll_pwait2 (Linux 5.11, glibc 2.35) takes a timespec; before that,
   epoll_wait and whole milliseconds */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#define HAVE_PWAIT2 1
#endif

struct cps_poller {
    int epfd;
    int pwait2;         /* epoll_pwait2 works here */
    struct epoll_event events[BATCH];
};


static int create(struct cps_poller **out) {
    struct cps_poller *p = malloc(sizeof *p);
    if (p == NULL)
        return -ENOMEM;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0) {
        int err = errno;
        free(p);
        return -err;
    }
#ifdef HAVE_PWAIT2
    p->pwait2 = 1;
#else
    p->pwait2 = 0;
#endif
    *out = p;
    return 0;
}


static uint32_t to_epoll(unsigned events) {
    return ((events & CPS_READ) ? EPOLLIN : 0) | ((events & CPS_WRITE) ? EPOLLOUT : 0);
}


static int watch(struct cps_poller *p, int fd, unsigned old, unsigned events) {
    struct epoll_event ev = { 0 };
    int op = old ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    ev.events = to_epoll(events);
    ev.data.fd = fd;
    if (epoll_ctl(p->epfd, op, fd, &ev) == 0)
        return 0;
    /* the kernel forgot a descriptor closed behind our back, or still
       knows one we thought gone: retry with the other operation */
    if (errno == ENOENT || errno == EEXIST) {
        op = (op == EPOLL_CTL_ADD) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(p->epfd, op, fd, &ev) == 0)
            return 0;
    }
    return -errno;
}


static void unwatch(struct cps_poller *p, int fd) {
    struct epoll_event ev = { 0 };
    epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, &ev);
}


static int wait_events(struct cps_poller *p, struct cps_fired *out, int max,
                       const struct timespec *timeout) {
    int n = -1, i;
    if (max > BATCH)
        max = BATCH;
#ifdef HAVE_PWAIT2
    if (p->pwait2) {
        n = epoll_pwait2(p->epfd, p->events, max, timeout, NULL);
        if (n < 0 && errno == ENOSYS)
            p->pwait2 = 0;      /* an older kernel: milliseconds from now on */
    }
#endif
    if (!p->pwait2)
        n = epoll_wait(p->epfd, p->events, max, cps_poller_ms(timeout));
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (i = 0; i < n; i++) {
        uint32_t e = p->events[i].events;
        out[i].fd = p->events[i].data.fd;
        out[i].events = 0;
        if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
            out[i].events |= CPS_READ;
        if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            out[i].events |= CPS_WRITE;
    }
    return n;
}


static void destroy(struct cps_poller *p) {
    close(p->epfd);
    free(p);
}


const struct cps_poller_ops cps_poller_epoll = {
    "epoll", create, watch, unwatch, wait_events, destroy
};

#endif
