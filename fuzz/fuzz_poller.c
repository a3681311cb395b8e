/*
** fuzz_poller.c: libFuzzer target for the poller backends (epoll, poll,
** select). The first byte picks the backend; the rest is a program of
** watch / modify / unwatch calls on real descriptors (AF_UNIX socket
** pairs and pipes made for each input), writes, reads and closes that
** change their readiness, and zero-timeout waits whose reports are
** compared with what the descriptors must report given the bytes in
** flight and the interest asked for. A descriptor at or above FD_SETSIZE
** must be refused by select with -ERANGE. Every descriptor an input
** opened is closed again; a leak aborts.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../csrc/poller.h"

#define FAIL(...) do { fprintf(stderr, "fuzz_poller: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)
#define CHECK(c, ...) do { if (!(c)) FAIL(__VA_ARGS__); } while (0)

#define NPAIR 4                 /* 3 socket pairs and a pipe */
#define NEND (2 * NPAIR)
/* this little in flight never blocks a writer: the kernel charges a
   socket for each write's buffer, not only for its bytes */
#define SMALL 2048
#define FEW 16

enum { W_ROOM, W_FULL, W_UNKNOWN };

struct end {
    int fd;                     /* -1 when closed */
    int pipe_rd, pipe_wr;       /* a pipe's read or write end */
    size_t pending;             /* bytes waiting to be read here */
    int wstate;                 /* can a write to the peer go through */
    int nwrites;                /* writes to the peer since it last drained */
    unsigned mask;              /* interest the poller was given, 0: none */
    int dead;                   /* closed while watched, not yet unwatched */
    int reset;                  /* the peer closed with bytes unread: ECONNRESET */
};

static const struct cps_poller_ops *ops;
static struct cps_poller *poller;
static struct end E[NEND];
static int big_ok = -1;             /* descriptors >= FD_SETSIZE are possible */

static const uint8_t *in;
static size_t inlen;


static unsigned byte(void) {
    if (inlen == 0)
        return 0;
    inlen--;
    return *in++;
}


static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;
    CHECK(d != NULL, "cannot list /proc/self/fd");
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n - 1;                                   /* the directory itself */
}


static int peer(int i) {
    return i ^ 1;
}


static void open_pair(int k) {
    int fds[2], i;
    if (k == NPAIR - 1)
        CHECK(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    else
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0,
              "socketpair: %s", strerror(errno));
    for (i = 0; i < 2; i++) {
        struct end *e = &E[2 * k + i];
        e->fd = fds[i];
        e->pipe_rd = k == NPAIR - 1 && i == 0;
        e->pipe_wr = k == NPAIR - 1 && i == 1;
        e->pending = 0;
        e->nwrites = 0;
        e->wstate = e->pipe_rd ? W_FULL : W_ROOM;   /* a pipe's read end never writes */
    }
}


/* the poller forgets fd, as forget_fd / settle do */
static void unwatch(struct end *e, int fd) {
    ops->unwatch(poller, fd);
    e->mask = 0;
    e->dead = 0;
}


static void op_watch(struct end *e) {
    unsigned m = byte() % 3 + 1, old = e->mask;
    int err;
    if (e->fd < 0)
        return;
    /* sometimes claim the descriptor is new although it is watched: the
       epoll backend must fall back from ADD to MOD */
    if (byte() & 1)
        old = 0;
    err = ops->watch(poller, e->fd, old, m);
    CHECK(err == 0, "%s: watch(%d, %u, %u) = %d", ops->name, e->fd, old, m, err);
    e->mask = m;
}


static void op_write(int i) {
    struct end *e = &E[i], *to = &E[peer(i)];
    char buf[65536];
    unsigned n = byte();
    ssize_t k;
    if (e->fd < 0 || to->fd < 0 || e->pipe_rd)
        return;
    memset(buf, 'x', sizeof buf);
    if (n == 255) {                                 /* fill it up */
        while ((k = write(e->fd, buf, sizeof buf)) > 0)
            to->pending += (size_t)k;
        CHECK(errno == EAGAIN, "write: %s", strerror(errno));
        e->wstate = W_FULL;
        return;
    }
    if (n == 0 || e->wstate != W_ROOM)
        return;
    k = write(e->fd, buf, n);
    CHECK(k == (ssize_t)n, "write of %u gave %zd: %s", n, k, strerror(errno));
    to->pending += n;
    if (to->pending > SMALL || ++e->nwrites > FEW)
        e->wstate = W_UNKNOWN;
}


static void op_read(int i) {
    struct end *e = &E[i], *from = &E[peer(i)];
    char buf[65536];
    unsigned n = byte();
    size_t want, got = 0;
    ssize_t k;
    if (e->fd < 0 || e->pipe_wr || e->reset)
        return;
    want = n == 255 ? e->pending : (n < e->pending ? n : e->pending);
    while (got < want) {
        size_t chunk = want - got < sizeof buf ? want - got : sizeof buf;
        k = read(e->fd, buf, chunk);
        CHECK(k > 0, "read: %zd (%s), %zu of %zu pending", k, strerror(errno), got, e->pending);
        got += (size_t)k;
    }
    if (e->pending == 0) {
        k = read(e->fd, buf, 1);
        CHECK(k == 0 ? from->fd < 0 : (k < 0 && errno == EAGAIN),
              "read of an empty end gave %zd (%s)", k, strerror(errno));
    }
    e->pending -= got;
    if (from->fd >= 0) {
        if (e->pending == 0) {
            from->wstate = W_ROOM;
            from->nwrites = 0;
        }
        else if (got > 0 && from->wstate == W_FULL)
            from->wstate = W_UNKNOWN;
    }
}


static void op_close(int i) {
    struct end *e = &E[i];
    if (e->fd < 0)
        return;
    if (e->mask && (byte() & 1))                    /* forgotten first, as close() does */
        unwatch(e, e->fd);
    close(e->fd);
    if (e->mask)
        e->dead = e->fd;                            /* closed behind the poller's back */
    if (e->pending > 0 && !e->pipe_rd)
        E[peer(i)].reset = 1;
    e->fd = -1;
    e->pending = 0;
}


/* both ends of pair k closed: make it anew; numbers come back */
static void op_reopen(int k) {
    int i;
    for (i = 0; i < 2; i++)
        if (E[2 * k + i].fd >= 0)
            return;
    /* the loop has forgotten every dead descriptor before a number can
       come back (their waiters met "closed"); otherwise a new descriptor
       would inherit a stale registration */
    for (i = 0; i < NEND; i++)
        if (E[i].fd < 0 && E[i].mask)
            unwatch(&E[i], E[i].dead);
    for (i = 0; i < 2; i++)
        E[2 * k + i].reset = 0;
    open_pair(k);
}


/* a descriptor past FD_SETSIZE: select refuses it, the others take it */
static void op_big(void) {
    int fd, err, i = (int)(byte() % NEND);
    if (!big_ok || E[i].fd < 0)
        return;
    fd = fcntl(E[i].fd, F_DUPFD_CLOEXEC, FD_SETSIZE + (int)byte());
    CHECK(fd >= FD_SETSIZE, "dup above FD_SETSIZE: %s", strerror(errno));
    err = ops->watch(poller, fd, 0, CPS_READ);
    if (strcmp(ops->name, "select") == 0) {
        CHECK(err == -ERANGE, "select took descriptor %d (%d)", fd, err);
    } else {
        CHECK(err == 0, "%s refused descriptor %d (%d)", ops->name, fd, err);
        ops->unwatch(poller, fd);
    }
    close(fd);
}


/* what a wait must report for end i: bits that must be set, bits that
   may be set */
static void expect(int i, unsigned *must, unsigned *may) {
    struct end *e = &E[i], *p = &E[peer(i)];
    int sel = strcmp(ops->name, "select") == 0, j, any_dead = 0;
    unsigned r = 0, w = 0, unknown = 0;
    *must = *may = 0;
    if (e->mask == 0)
        return;
    if (e->fd < 0) {                                /* closed behind its back */
        if (strcmp(ops->name, "epoll") != 0)        /* epoll drops it silently */
            *must = *may = CPS_READ | CPS_WRITE;
        return;
    }
    if (p->fd < 0) {                                /* hang-up / error */
        if (!sel) {
            *must = *may = CPS_READ | CPS_WRITE;
            return;
        }
        r = 1;                                      /* EOF, or the error of a pipe's write end */
        w = !e->pipe_rd;                            /* a pipe's read end only hangs up */
    } else {
        r = e->pending > 0;
        if (e->wstate == W_UNKNOWN)
            unknown = CPS_WRITE;
        else
            w = e->wstate == W_ROOM;
    }
    *must = ((r ? CPS_READ : 0) | (w ? CPS_WRITE : 0)) & e->mask;
    *may = (*must | unknown) & e->mask;
    /* select fails with EBADF while a dead descriptor is in its sets and
       then reports only the dead ones: the live ones come next time */
    for (j = 0; j < NEND; j++)
        any_dead |= E[j].fd < 0 && E[j].mask;
    if (sel && any_dead)
        *must = 0;
}


static void op_wait(void) {
    struct cps_fired out[NEND + 4];
    int n, i, k, max = (int)(byte() % (NEND + 2)) + 1, seen[NEND] = { 0 };
    unsigned must[NEND], may[NEND];
    int expected = 0;
    const struct timespec zero = { 0, 0 };
    n = ops->wait(poller, out, max, &zero);
    CHECK(n >= 0 && n <= max, "%s: wait returned %d (max %d)", ops->name, n, max);
    for (i = 0; i < NEND; i++) {
        expect(i, &must[i], &may[i]);
        expected += must[i] != 0;
    }
    for (k = 0; k < n; k++) {
        int fd = out[k].fd;
        for (i = 0; i < NEND; i++)
            if (E[i].mask && (E[i].fd >= 0 ? E[i].fd : E[i].dead) == fd)
                break;
        CHECK(i < NEND, "%s reported descriptor %d, which is not watched", ops->name, fd);
        CHECK(!seen[i], "%s reported descriptor %d twice", ops->name, fd);
        seen[i] = 1;
        CHECK(out[k].events != 0, "%s reported no events for %d", ops->name, fd);
        CHECK((out[k].events & must[i]) == must[i] && (out[k].events & ~may[i]) == 0,
              "%s: descriptor %d (end %d, mask %u, pending %zu, peer %s) got %u, expected %u..%u",
              ops->name, fd, i, E[i].mask, E[i].pending, E[peer(i)].fd < 0 ? "closed" : "open",
              out[k].events, must[i], may[i]);
    }
    /* a full batch may leave some out; otherwise everything due is there */
    if (n < max)
        for (i = 0; i < NEND; i++)
            CHECK(!must[i] || seen[i], "%s: end %d (fd %d, mask %u) due %u, not reported",
                  ops->name, i, E[i].fd, E[i].mask, must[i]);
    (void)expected;
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const struct cps_poller_ops *const all[] = {
        &cps_poller_epoll, &cps_poller_poll, &cps_poller_select
    };
    int i, err, base_fds;
    if (big_ok < 0) {
        int probe = fcntl(0, F_DUPFD_CLOEXEC, FD_SETSIZE + 300);
        big_ok = probe >= 0;
        if (probe >= 0)
            close(probe);
    }
    if (size == 0)
        return 0;
    base_fds = count_fds();
    in = data;
    inlen = size;
    ops = all[byte() % 3];
    err = ops->create(&poller);
    CHECK(err == 0, "%s: create failed (%d)", ops->name, err);
    memset(E, 0, sizeof E);
    for (i = 0; i < NPAIR; i++)
        open_pair(i);
    while (inlen > 0) {
        unsigned op = byte(), at = (unsigned)byte() % NEND;
        switch (op % 9) {
        case 0: op_watch(&E[at]); break;
        case 1: if (E[at].mask && E[at].fd >= 0) unwatch(&E[at], E[at].fd); break;
        case 2: case 3: op_write((int)at); break;
        case 4: op_read((int)at); break;
        case 5: op_close((int)at); break;
        case 6: op_reopen((int)(at % NPAIR)); break;
        case 7: op_big(); break;
        default: op_wait(); break;
        }
    }
    op_wait();
    for (i = 0; i < NEND; i++) {
        if (E[i].mask)
            unwatch(&E[i], E[i].fd >= 0 ? E[i].fd : E[i].dead);
        if (E[i].fd >= 0)
            close(E[i].fd);
    }
    ops->destroy(poller);
    CHECK(count_fds() == base_fds, "descriptors leaked: %d open, %d at start", count_fds(), base_fds);
    return 0;
}
