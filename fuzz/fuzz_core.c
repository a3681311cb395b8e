/*
** fuzz_core.c: libFuzzer target for the core's bookkeeping. The input is
** a program of operations on threads, the timer heap, the ready queue,
** the waiting sets and task sets; after every operation the structures
** are compared with a reference model kept here in plain arrays, and any
** difference aborts with a message.
**
** What is exercised as is: heap.c, ready.c, waitset.c, taskset.c,
** thread.c and loop.c: its public state changes (cps_loop_make_ready,
** cps_loop_wakeup, cps_loop_untask, cps_loop_drop, cps_loop_set_timeout,
** cps_loop_close) and whole steps (cps_loop_step: settle, wait, fired
** descriptors, due timers, run) against a scripted poller whose watch
** may fail and whose wait reports the descriptors the input names. Every
** thread is a real Lua coroutine (of a lua_State made at start-up) whose
** body returns at once, so a step runs each due thread to its end.
** What the harness cannot get from a step is a thread's yield into a
** sleep, a socket wait or a join (that would need Lua bodies): those,
** and standalone versions of the step's phases, are re-enacted here with
** the calls loop.c makes, each under a comment naming the loop.c function
** it follows. The order threads run in under the real dispatcher, with
** real Lua bodies, is checked by spec/model_spec.lua.
*/
#include <errno.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/loop.h"

/* loop.c refers to these; bind_loop.c (not linked) defines them */
const char cps_mark_read = 'r', cps_mark_write = 'w', cps_mark_sleep = 's', cps_mark_join = 'j';

#define NTH 40          /* thread slots */
#define NFD 140         /* descriptors 0..NFD-1: the waiting set grows past 64 and 128 */
#define NSET 4
/* pause deadlines: few keys for many ties, all in the monotonic clock's
   past so a real step finds them due; copas.timeout()s are 1000 s ahead */
#define PAST (-100.0)

#define FAIL(...) do { fprintf(stderr, "fuzz_core: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)
#define CHECK(c, ...) do { if (!(c)) FAIL(__VA_ARGS__); } while (0)

enum { M_FREE, M_READY, M_RUNNING, M_SLEEP, M_FOREVER, M_IO, M_JOIN, M_QUEUED };

static const int state_of[] = {
    -1, CPS_T_READY, CPS_T_RUNNING, CPS_T_SLEEP, CPS_T_FOREVER, CPS_T_IO, CPS_T_JOIN, CPS_T_QUEUED
};

/* ------------------------------------------------------------ the model */

struct mthread {
    int st;             /* M_* */
    int fd;             /* M_IO */
    unsigned dir;
    int set;            /* set counting it, or -1 */
    int join;           /* M_JOIN: set it waits for */
    int sleeping;       /* sleep node in the heap */
    int timeout;        /* timeout node in the heap */
};

struct mnode { struct cps_heap_node *n; double when; uint64_t seq; };

struct mfd {
    int exists, server, changed;
    unsigned kmask;
    int rd[NTH], nrd, wr[NTH], nwr;
};

struct mset {
    int live, handle;
    size_t max, running;
    int q[NTH], nq, j[NTH], nj;
    struct cps_taskset *p;
};

static lua_State *L;
static int anchors = LUA_NOREF;         /* table: slot -> coroutine */
static struct cps_loop loop;
static struct cps_thread *T[NTH];
static struct mthread M[NTH];
static int rq[NTH], rn, rnf;            /* ready queue, size of front group */
static unsigned long rgen[NTH], gen, limit;
static int phase;                       /* between begin and the pop that ends it */
static struct mnode H[2 * NTH];
static int hn;
static uint64_t hseq;
static struct mfd F[NFD];
static int chg[4 * NFD], nchg;
static struct mset S[NSET];

/* input */
static const uint8_t *in;
static size_t inlen;

static unsigned byte(void) {
    if (inlen == 0)
        return 0;
    inlen--;
    return *in++;
}

/* --------------------------------------------------- a scripted poller */

static struct cps_fired script[4];
static int nscript, waited;
static unsigned failmask, ncalls;       /* watch call k fails if bit k % 8 is set */

static int fake_create(struct cps_poller **out) {
    static int dummy;
    *out = (struct cps_poller *)(void *)&dummy;
    return 0;
}

static int fake_watch(struct cps_poller *p, int fd, unsigned old, unsigned events) {
    unsigned k = ncalls++;
    (void)p; (void)fd; (void)old; (void)events;
    if ((failmask >> (k % 8)) & 1)
        return (k & 1) ? -EPERM : -EBADF;   /* refused, or gone */
    return 0;
}

static void fake_unwatch(struct cps_poller *p, int fd) {
    (void)p; (void)fd;
}

static int fake_wait(struct cps_poller *p, struct cps_fired *out, int max,
                     const struct timespec *timeout) {
    (void)p;
    CHECK(timeout != NULL && timeout->tv_sec == 0 && timeout->tv_nsec == 0,
          "step(0) waited");
    CHECK(max >= nscript, "wait: room for %d", max);
    memcpy(out, script, (size_t)nscript * sizeof *out);
    waited = 1;
    return nscript;
}

static void fake_destroy(struct cps_poller *p) {
    (void)p;
}

static const struct cps_poller_ops fake_ops = {
    "scripted", fake_create, fake_watch, fake_unwatch, fake_wait, fake_destroy
};


static void del_at(int *a, int *n, int i) {
    memmove(a + i, a + i + 1, (size_t)(*n - i - 1) * sizeof *a);
    (*n)--;
}


static int find(const int *a, int n, int v) {
    int i;
    for (i = 0; i < n; i++)
        if (a[i] == v)
            return i;
    return -1;
}


static void m_ready_push(int id) {
    rgen[rn] = gen;
    rq[rn++] = id;
}


static void m_ready_front(int id) {
    memmove(rq + rnf + 1, rq + rnf, (size_t)(rn - rnf) * sizeof *rq);
    memmove(rgen + rnf + 1, rgen + rnf, (size_t)(rn - rnf) * sizeof *rgen);
    rq[rnf] = id;
    rgen[rnf] = gen;
    rn++;
    rnf++;
}


static void m_ready_remove(int id) {
    int i = find(rq, rn, id);
    CHECK(i >= 0, "model: %d not ready", id);
    memmove(rgen + i, rgen + i + 1, (size_t)(rn - i - 1) * sizeof *rgen);
    del_at(rq, &rn, i);
    if (i < rnf)
        rnf--;
}


static void m_heap_add(struct cps_heap_node *n, double when) {
    H[hn].n = n;
    H[hn].when = when;
    H[hn].seq = hseq++;
    hn++;
}


static void m_heap_del(struct cps_heap_node *n) {
    int i;
    for (i = 0; i < hn; i++)
        if (H[i].n == n) {
            H[i] = H[--hn];
            return;
        }
    FAIL("model: node not in heap");
}


static int m_heap_min(void) {
    int i, best = -1;
    for (i = 0; i < hn; i++)
        if (best < 0 || H[i].when < H[best].when
            || (H[i].when == H[best].when && H[i].seq < H[best].seq))
            best = i;
    return best;
}


static void m_mark(int fd) {
    if (!F[fd].changed) {
        F[fd].changed = 1;
        chg[nchg++] = fd;
    }
}


static size_t m_servers(void) {
    size_t n = 0;
    int fd;
    for (fd = 0; fd < NFD; fd++)
        n += F[fd].server != 0;
    return n;
}


static int m_refs(int s) {
    int i, r = S[s].nj;
    for (i = 0; i < NTH; i++)
        if (M[i].st != M_FREE && M[i].set == s)
            r++;
    return r;
}


static void m_maybe_free(int s) {
    if (!S[s].handle && m_refs(s) == 0)
        S[s].live = 0;
}


static void m_detach(int id) {
    struct mthread *m = &M[id];
    int i;
    switch (m->st) {
    case M_READY:
        m_ready_remove(id);
        break;
    case M_SLEEP:
        m_heap_del(&T[id]->sleep);
        m->sleeping = 0;
        break;
    case M_IO: {
        struct mfd *f = &F[m->fd];
        if (m->dir == CPS_READ) {
            CHECK((i = find(f->rd, f->nrd, id)) >= 0, "model: not a reader");
            del_at(f->rd, &f->nrd, i);
        } else {
            CHECK((i = find(f->wr, f->nwr, id)) >= 0, "model: not a writer");
            del_at(f->wr, &f->nwr, i);
        }
        m_mark(m->fd);
        if (m->sleeping) {
            m_heap_del(&T[id]->sleep);
            m->sleeping = 0;
        }
        break;
    }
    case M_JOIN: {
        int s = m->join;
        CHECK((i = find(S[s].j, S[s].nj, id)) >= 0, "model: not a joiner");
        del_at(S[s].j, &S[s].nj, i);
        m->join = -1;
        m_maybe_free(s);
        break;
    }
    case M_QUEUED: {
        int s = m->set;
        CHECK((i = find(S[s].q, S[s].nq, id)) >= 0, "model: not queued");
        del_at(S[s].q, &S[s].nq, i);
        break;
    }
    default:
        break;
    }
    m->st = M_RUNNING;
}


static void m_make_ready(int id) {
    m_detach(id);
    M[id].st = M_READY;
    m_ready_push(id);
}


static void m_refill(int s) {
    struct mset *ms = &S[s];
    while (ms->running < ms->max && ms->nq > 0) {
        m_make_ready(ms->q[0]);
        ms->running++;
    }
    if (ms->running == 0 && ms->nq == 0)
        while (ms->nj > 0)
            m_make_ready(ms->j[0]);
}


static void m_untask(int id) {
    int s = M[id].set;
    if (s < 0)
        return;
    if (M[id].st == M_QUEUED)
        m_detach(id);
    else
        S[s].running--;
    M[id].set = -1;
    m_refill(s);
    m_maybe_free(s);
}


static void m_untimeout(int id) {
    if (M[id].timeout) {
        m_heap_del(&T[id]->timeout);
        M[id].timeout = 0;
    }
}


static void m_drop(int id) {
    m_untask(id);
    m_detach(id);
    m_untimeout(id);
    M[id].st = M_FREE;
    T[id] = NULL;
}

/* ----------------------------------------------------------- comparison */

static int id_of(const struct cps_link *l) {
    const struct cps_thread *th = cps_container_of(l, struct cps_thread, link);
    int i;
    for (i = 0; i < NTH; i++)
        if (T[i] == th)
            return i;
    FAIL("a queue holds a thread the model does not know");
}


static void check_queue(const struct cps_link *q, const int *ids, int n, const char *what) {
    const struct cps_link *l = q->next;
    int i;
    for (i = 0; i < n; i++, l = l->next) {
        CHECK(l != q, "%s: %d threads, model has %d", what, i, n);
        CHECK(l->next->prev == l, "%s: broken links", what);
        CHECK(id_of(l) == ids[i], "%s[%d]: thread %d, model says %d", what, i, id_of(l), ids[i]);
    }
    CHECK(l == q, "%s: longer than the model's %d", what, n);
}


static int less(const struct cps_heap_node *a, const struct cps_heap_node *b) {
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}


static void check_all(void) {
    struct cps_heap *h = &loop.heap;
    struct cps_waitset *ws = &loop.ws;
    size_t n_sleep = 0, n_io = 0, n_dl = 0, n_idle = 0, n_idle_to = 0, n_to = 0, n_q = 0, live = 0;
    int i, k;

    /* ready queue: order, generations, the front group */
    check_queue(&loop.ready.q, rq, rn, "ready queue");
    CHECK(loop.ready.len == (size_t)rn, "ready.len %zu, model %d", loop.ready.len, rn);
    for (i = 0; i < rn; i++)
        CHECK(T[rq[i]]->gen == rgen[i], "ready[%d]: generation %lu, model %lu",
              i, T[rq[i]]->gen, rgen[i]);
    CHECK(loop.ready.front == (rnf ? &T[rq[rnf - 1]]->link : &loop.ready.q),
          "ready: front group ends at the wrong place (model: %d)", rnf);

    /* heap: same nodes, slots right, heap order, same minimum */
    CHECK(h->len == (size_t)hn, "heap has %zu nodes, model %d", h->len, hn);
    for (i = 0; i < hn; i++) {
        const struct cps_heap_node *n = H[i].n;
        CHECK(n->index < h->len && cps_heap_at(h, n->index) == n, "heap: node %d lost its slot", i);
        CHECK(h->slots[n->index].when == n->when, "heap: slot of node %d holds another deadline", i);
        CHECK(n->when == H[i].when && n->seq == H[i].seq, "heap: node %d changed key", i);
    }
    for (i = 1; i < hn; i++)
        CHECK(!less(cps_heap_at(h, i), cps_heap_at(h, cps_heap_parent(i))), "heap order broken at %d", i);
    k = m_heap_min();
    CHECK(cps_heap_top(h) == (k < 0 ? NULL : H[k].n), "heap top is not the model's minimum");

    /* threads */
    for (i = 0; i < NTH; i++) {
        struct mthread *m = &M[i];
        struct cps_thread *th = T[i];
        if (m->st == M_FREE)
            continue;
        live++;
        CHECK(cps_threads_get(&loop.threads, th->co) == th, "thread table lost thread %d", i);
        CHECK(th->state == state_of[m->st], "thread %d: state %d, model %d", i, th->state, m->st);
        CHECK(cps_heap_contains(&th->sleep) == m->sleeping, "thread %d: sleep node", i);
        CHECK(cps_heap_contains(&th->timeout) == m->timeout, "thread %d: timeout node", i);
        CHECK(th->set == (m->set < 0 ? NULL : S[m->set].p), "thread %d: set", i);
        if (m->st == M_IO)
            CHECK(th->fd == m->fd && th->dir == m->dir, "thread %d: descriptor", i);
        if (m->st == M_JOIN)
            CHECK(th->join == S[m->join].p, "thread %d: joined set", i);
        n_sleep += m->st == M_SLEEP;
        n_io += m->st == M_IO;
        n_dl += m->st == M_IO && m->sleeping;
        n_idle += m->st == M_FOREVER || m->st == M_JOIN;
        n_idle_to += m->st == M_FOREVER && m->timeout;
        n_to += m->timeout;
        n_q += m->st == M_QUEUED;
    }
    CHECK(loop.threads.len == live, "thread table has %zu, model %zu", loop.threads.len, live);
    CHECK(cps_threads_get(&loop.threads, (void *)&loop) == NULL, "found a stranger");
    CHECK(loop.n_sleep == n_sleep && loop.n_io == n_io && loop.n_io_deadline == n_dl
          && loop.n_idle == n_idle && loop.n_idle_timeout == n_idle_to
          && loop.n_timeouts == n_to && loop.n_queued == n_q && loop.n_servers == m_servers(),
          "loop counters differ: sleep %zu/%zu io %zu/%zu dl %zu/%zu idle %zu/%zu "
          "idle_to %zu/%zu to %zu/%zu q %zu/%zu",
          loop.n_sleep, n_sleep, loop.n_io, n_io, loop.n_io_deadline, n_dl, loop.n_idle, n_idle,
          loop.n_idle_timeout, n_idle_to, loop.n_timeouts, n_to, loop.n_queued, n_q);

    /* waiting sets and the change list */
    CHECK(ws->nchanged == nchg, "change list has %d, model %d", ws->nchanged, nchg);
    CHECK(nchg <= ws->cap, "change list longer than its %d slots", ws->cap);
    for (i = 0; i < nchg; i++)
        CHECK(ws->changed[i] == chg[i], "change list[%d] = %d, model %d", i, ws->changed[i], chg[i]);
    for (i = 0; i < NFD; i++) {
        struct mfd *f = &F[i];
        struct cps_fdent *e = cps_waitset_find(ws, i);
        unsigned want;
        if (!f->exists) {
            CHECK(e == NULL, "fd %d has an entry the model lacks", i);
            continue;
        }
        CHECK(e != NULL, "fd %d lost its entry", i);
        check_queue(&e->readers, f->rd, f->nrd, "readers");
        check_queue(&e->writers, f->wr, f->nwr, "writers");
        CHECK(e->server == f->server && e->changed == f->changed && e->kmask == f->kmask,
              "fd %d: server/changed/kmask %d/%d/%u, model %d/%d/%u", i,
              e->server, e->changed, e->kmask, f->server, f->changed, f->kmask);
        want = (f->server || f->nrd ? CPS_READ : 0) | (f->nwr ? CPS_WRITE : 0);
        CHECK(cps_waitset_wanted(e) == want, "fd %d: wanted %u, model %u", i,
              cps_waitset_wanted(e), want);
        /* lazy interest: a difference with the kernel is always listed */
        CHECK(want == f->kmask || f->changed, "fd %d: interest differs and is not listed", i);
    }

    /* task sets */
    for (i = 0; i < NSET; i++) {
        struct mset *ms = &S[i];
        if (!ms->live)
            continue;
        CHECK(ms->p->max == ms->max && ms->p->running == ms->running
              && ms->p->nqueued == (size_t)ms->nq && ms->p->handle == ms->handle
              && ms->p->refs == (size_t)m_refs(i),
              "set %d: max/running/queued/refs %zu/%zu/%zu/%zu, model %zu/%zu/%d/%d", i,
              ms->p->max, ms->p->running, ms->p->nqueued, ms->p->refs,
              ms->max, ms->running, ms->nq, m_refs(i));
        CHECK(ms->running <= ms->max, "set %d runs %zu of %zu", i, ms->running, ms->max);
        CHECK(ms->nq == 0 || ms->running == ms->max, "set %d queues with a free slot", i);
        check_queue(&ms->p->queued, ms->q, ms->nq, "queued tasks");
        check_queue(&ms->p->joiners, ms->j, ms->nj, "joiners");
        CHECK(cps_taskset_idle(ms->p) == (ms->running == 0 && ms->nq == 0), "set %d idle", i);
    }
}

/* ----------------------------------------------------------- operations */

static int pick(int want) {
    /* a thread slot whose model state is `want` (M_FREE: a free slot),
       starting at the slot the input names */
    int start = (int)(byte() % NTH), i;
    for (i = 0; i < NTH; i++) {
        int id = (start + i) % NTH;
        if (want < 0 ? M[id].st != M_FREE : M[id].st == want)
            return id;
    }
    return -1;
}


static int pick_set(void) {
    int start = (int)(byte() % NSET), i;
    for (i = 0; i < NSET; i++)
        if (S[(start + i) % NSET].live && S[(start + i) % NSET].handle)
            return (start + i) % NSET;
    return -1;
}


/* the body of every thread: a step runs it to its end at once */
static int body(lua_State *co) {
    (void)co;
    return 0;
}


/* as new_thread(): the coroutine is kept alive by the anchors table
   instead of a registry reference of its own */
static int new_thread(void) {
    int id = pick(M_FREE);
    struct cps_thread *th;
    lua_State *co;
    if (id < 0 || cps_threads_reserve(&loop.threads) < 0 || (th = calloc(1, sizeof *th)) == NULL)
        return -1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, anchors);
    co = lua_newthread(L);
    lua_pushcfunction(co, body);
    lua_rawseti(L, -2, id + 1);
    lua_pop(L, 1);
    th->co = co;
    th->ref = LUA_REFNIL;               /* "held": wakeup has nothing to strengthen */
    th->sock_ref = th->timeout_cb = LUA_NOREF;
    th->fd = th->wake_fd = -1;
    th->sleep.index = th->timeout.index = CPS_HEAP_NONE;
    th->sleep.kind = CPS_NODE_SLEEP;
    th->timeout.kind = CPS_NODE_TIMEOUT;
    cps_queue_init(&th->link);
    th->state = CPS_T_RUNNING;
    cps_threads_put(&loop.threads, th);
    T[id] = th;
    memset(&M[id], 0, sizeof M[id]);
    M[id].st = M_RUNNING;
    M[id].set = M[id].join = -1;
    return id;
}


static void op_spawn(int first) {
    int id;
    if (first && phase)             /* the loop only does this before a run phase */
        first = 0;
    if ((id = new_thread()) < 0)
        return;
    T[id]->state = CPS_T_READY;
    M[id].st = M_READY;
    if (first) {
        cps_ready_push_front(&loop.ready, T[id]);
        m_ready_front(id);
    } else {
        cps_ready_push(&loop.ready, T[id]);
        m_ready_push(id);
    }
}


/* as cps_loop_spawn_task, coroutine aside */
static void op_spawn_task(void) {
    int s = pick_set(), id;
    struct cps_taskset *p;
    if (s < 0 || (id = new_thread()) < 0)
        return;
    p = S[s].p;
    T[id]->set = p;
    M[id].set = s;
    p->refs++;
    if (p->running < p->max) {
        p->running++;
        T[id]->state = CPS_T_READY;
        cps_ready_push(&loop.ready, T[id]);
        S[s].running++;
        M[id].st = M_READY;
        m_ready_push(id);
    } else {
        T[id]->state = CPS_T_QUEUED;
        cps_queue_push(&p->queued, &T[id]->link);
        p->nqueued++;
        loop.n_queued++;
        M[id].st = M_QUEUED;
        S[s].q[S[s].nq++] = id;
    }
}


static void op_begin(void) {
    if (phase)
        return;
    limit = cps_ready_begin(&loop.ready);
    CHECK(limit == gen, "begin returned generation %lu, model %lu", limit, gen);
    gen++;
    rnf = 0;
    phase = 1;
}


static void op_pop(void) {
    struct cps_thread *th;
    int i;
    if (!phase)
        return;
    th = cps_ready_pop(&loop.ready, limit);
    if (rn > 0 && rgen[0] <= limit) {
        int id = rq[0];
        CHECK(th == T[id], "pop: got another thread than the model's %d", id);
        m_ready_remove(id);
        th->state = CPS_T_RUNNING;  /* as run() */
        M[id].st = M_RUNNING;
    } else {
        CHECK(th == NULL, "pop: got a thread, the model has none due");
        /* the phase resumed everything that was ready when it began */
        for (i = 0; i < rn; i++)
            CHECK(rgen[i] > limit, "pop: phase ends with thread %d of it still ready", rq[i]);
        phase = 0;
    }
}


/* a running thread yields: as on_yield + wait_sleep/wait_io/wait_join */
static void op_yield(void) {
    int id = pick(M_RUNNING), what = (int)byte() % 7;
    struct cps_thread *th;
    if (id < 0)
        return;
    th = T[id];
    switch (what) {
    case 0:                                         /* returns */
        cps_loop_drop(L, &loop, th);
        lua_pop(L, 1);
        m_drop(id);
        break;
    case 1:                                         /* pause(0) */
        th->resume = CPS_R_ELAPSED;
        th->state = CPS_T_READY;
        cps_ready_push(&loop.ready, th);
        M[id].st = M_READY;
        m_ready_push(id);
        break;
    case 2: {                                       /* pause(s): few keys, many ties */
        double when = PAST + (double)(byte() % 16);
        if (cps_heap_reserve(&loop.heap, 1) < 0)
            return;
        cps_heap_push(&loop.heap, &th->sleep, when);
        th->state = CPS_T_SLEEP;
        loop.n_sleep++;
        M[id].st = M_SLEEP;
        M[id].sleeping = 1;
        m_heap_add(&th->sleep, when);
        break;
    }
    case 3:                                         /* pauseforever, held */
        th->state = CPS_T_FOREVER;
        loop.n_idle++;
        if (cps_heap_contains(&th->timeout))
            loop.n_idle_timeout++;
        M[id].st = M_FOREVER;
        break;
    case 4:
    case 5: {                                       /* wait to read / to write */
        int fd = (int)(byte() % NFD), deadline = byte() & 1;
        unsigned dir = what == 4 ? CPS_READ : CPS_WRITE;
        struct cps_fdent *e = cps_waitset_get(&loop.ws, fd);
        struct mfd *f = &F[fd];
        CHECK(e != NULL, "waitset_get(%d) failed", fd);
        f->exists = 1;
        if (deadline && cps_heap_reserve(&loop.heap, 1) == 0) {
            double when = PAST + (double)(byte() % 16);
            cps_heap_push(&loop.heap, &th->sleep, when);
            loop.n_io_deadline++;
            M[id].sleeping = 1;
            m_heap_add(&th->sleep, when);
        }
        cps_queue_push(dir == CPS_READ ? &e->readers : &e->writers, &th->link);
        th->state = CPS_T_IO;
        th->fd = fd;
        th->dir = dir;
        loop.n_io++;
        cps_waitset_mark(&loop.ws, fd);
        M[id].st = M_IO;
        M[id].fd = fd;
        M[id].dir = dir;
        if (dir == CPS_READ)
            f->rd[f->nrd++] = id;
        else
            f->wr[f->nwr++] = id;
        m_mark(fd);
        break;
    }
    case 6: {                                       /* set:wait() */
        int s = pick_set();
        struct cps_taskset *p = s < 0 ? NULL : S[s].p;
        if (p == NULL || cps_taskset_idle(p)) {
            th->resume = CPS_R_NOTHING;
            th->state = CPS_T_READY;
            cps_ready_push(&loop.ready, th);
            M[id].st = M_READY;
            m_ready_push(id);
            break;
        }
        th->state = CPS_T_JOIN;
        th->join = p;
        p->refs++;
        loop.n_idle++;
        cps_queue_push(&p->joiners, &th->link);
        M[id].st = M_JOIN;
        M[id].join = s;
        S[s].j[S[s].nj++] = id;
        break;
    }
    }
}


static void op_wakeup(void) {
    int id = pick(-1), woke, expect;
    if (id < 0)
        return;
    expect = M[id].st == M_SLEEP || M[id].st == M_FOREVER;
    woke = cps_loop_wakeup(L, &loop, T[id]);
    CHECK(woke == expect, "wakeup of thread %d in model state %d returned %d", id, M[id].st, woke);
    if (expect)
        m_make_ready(id);
}


/* removethread, or a thread dropped by removeall */
static void op_remove(void) {
    int id = pick(-1);
    if (id < 0)
        return;
    cps_loop_drop(L, &loop, T[id]);
    CHECK(lua_isnil(L, -1), "drop pushed an autoclose socket");
    lua_pop(L, 1);
    m_drop(id);
}


/* set:removethread(co): as l_untask */
static void op_untask(void) {
    int id = pick(-1);
    if (id < 0 || M[id].set < 0)
        return;
    if (M[id].st == M_QUEUED) {
        cps_loop_drop(L, &loop, T[id]);
        lua_pop(L, 1);
        m_drop(id);
    } else {
        cps_loop_untask(&loop, T[id]);
        m_untask(id);
    }
}


static void op_timeout(void) {
    int id = pick(-1), arm = byte() & 1;
    double delay = arm ? 1000.0 + byte() : 0;
    struct cps_thread *th;
    if (id < 0)
        return;
    th = T[id];
    if (arm) {
        if (cps_heap_reserve(&loop.heap, 1) < 0)
            return;
        lua_pushboolean(L, 1);                      /* the callback */
    }
    cps_loop_set_timeout(L, &loop, th, delay);
    m_untimeout(id);
    if (arm) {
        M[id].timeout = 1;
        m_heap_add(&th->timeout, th->timeout.when);  /* the clock is the core's */
    }
}


/* due timers, as timers() with `now` from the input; a due copas.timeout
   is disarmed (its callback is Lua's business) */
static void op_timers(void) {
    unsigned b = byte();
    double now = b == 255 ? INFINITY : PAST + (double)(b % 16);
    struct cps_heap_node *n;
    while ((n = cps_heap_top(&loop.heap)) != NULL && n->when <= now) {
        int k = m_heap_min(), id;
        CHECK(k >= 0 && H[k].n == n, "timers: heap top is not the model's minimum");
        if (n->kind == CPS_NODE_SLEEP) {
            struct cps_thread *th = cps_container_of(n, struct cps_thread, sleep);
            for (id = 0; T[id] != th; id++)
                ;
            cps_loop_make_ready(&loop, th, th->state == CPS_T_IO ? CPS_R_TIMEOUT : CPS_R_ELAPSED);
            m_make_ready(id);
        } else {
            struct cps_thread *th = cps_container_of(n, struct cps_thread, timeout);
            for (id = 0; T[id] != th; id++)
                ;
            cps_loop_set_timeout(L, &loop, th, 0);
            m_untimeout(id);
        }
    }
}


/* readiness of a descriptor, as fired() (servers' accepts are Lua's) */
static void op_fire(void) {
    int fd = (int)(byte() % NFD);
    unsigned ev = byte() % 3 + 1;
    struct cps_fdent *e = cps_waitset_find(&loop.ws, fd);
    struct mfd *f = &F[fd];
    struct cps_link *l;
    CHECK((e != NULL) == f->exists, "fd %d: entry presence", fd);
    if (e == NULL)
        return;
    if ((ev & CPS_READ) && !e->server) {
        if ((l = cps_queue_head(&e->readers)) != NULL) {
            CHECK(f->nrd > 0 && id_of(l) == f->rd[0], "fd %d: first reader", fd);
            cps_loop_make_ready(&loop, cps_container_of(l, struct cps_thread, link), CPS_R_READY);
            m_make_ready(f->rd[0]);
        } else {
            cps_waitset_mark(&loop.ws, fd);
            m_mark(fd);
        }
    }
    if (ev & CPS_WRITE) {
        if ((l = cps_queue_head(&e->writers)) != NULL) {
            CHECK(f->nwr > 0 && id_of(l) == f->wr[0], "fd %d: first writer", fd);
            cps_loop_make_ready(&loop, cps_container_of(l, struct cps_thread, link), CPS_R_READY);
            m_make_ready(f->wr[0]);
        } else {
            cps_waitset_mark(&loop.ws, fd);
            m_mark(fd);
        }
    }
}


/* wake every waiter of fd, readers first (claim, forget_fd, settle) */
static void wake_fd(int fd) {
    struct cps_fdent *e = loop.ws.ents[fd];
    struct cps_link *l;
    while ((l = cps_queue_head(&e->readers)) != NULL) {
        cps_loop_make_ready(&loop, cps_container_of(l, struct cps_thread, link), CPS_R_READY);
        m_make_ready(F[fd].rd[0]);
    }
    while ((l = cps_queue_head(&e->writers)) != NULL) {
        cps_loop_make_ready(&loop, cps_container_of(l, struct cps_thread, link), CPS_R_READY);
        m_make_ready(F[fd].wr[0]);
    }
}


/* another socket took the descriptor, as claim() */
static void op_reuse(void) {
    int fd = (int)(byte() % NFD);
    struct cps_fdent *e = cps_waitset_find(&loop.ws, fd);
    if (e == NULL)
        return;
    wake_fd(fd);
    if (e->server) {
        e->server = F[fd].server = 0;
        loop.n_servers--;
    }
    e->kmask = F[fd].kmask = 0;
}


/* addserver / removeserver, the kernel side assumed to succeed */
static void op_server(void) {
    int fd = (int)(byte() % NFD);
    struct cps_fdent *e = cps_waitset_get(&loop.ws, fd);
    CHECK(e != NULL, "waitset_get(%d) failed", fd);
    F[fd].exists = 1;
    if (!e->server) {
        e->kmask = cps_waitset_wanted(e) | CPS_READ;
        e->server = 1;
        loop.n_servers++;
        F[fd].kmask = e->kmask;
        F[fd].server = 1;
    } else {
        e->server = F[fd].server = 0;
        loop.n_servers--;
        cps_waitset_mark(&loop.ws, fd);
        m_mark(fd);
    }
}


/* the change list, as settle(); `fail` makes the kernel refuse an entry */
static void op_settle(void) {
    struct cps_waitset *ws = &loop.ws;
    unsigned refuse = byte();           /* by position in the list */
    int i;
    for (i = 0; i < ws->nchanged; i++) {
        int fd = ws->changed[i];
        struct cps_fdent *e = ws->ents[fd];
        unsigned w = cps_waitset_wanted(e);
        CHECK(i < nchg && chg[i] == fd, "settle: change list[%d] = %d, model differs", i, fd);
        if (w != e->kmask) {
            if (w != 0 && ((refuse >> (i % 8)) & 1)) {
                wake_fd(fd);                        /* marks fd: still listed */
                if (e->server) {
                    e->server = F[fd].server = 0;
                    loop.n_servers--;
                }
                w = 0;
            }
            e->kmask = F[fd].kmask = w;
        }
        e->changed = 0;
        F[fd].changed = 0;
    }
    CHECK(i == nchg, "settle: the list had %d, model %d", i, nchg);
    ws->nchanged = 0;
    nchg = 0;
}


/* a whole cps_loop_step(L, loop, 0): the model predicts each phase, then
   the real step runs and everything is compared */
static int owner_of(const struct cps_heap_node *n) {
    int id;
    for (id = 0; id < NTH; id++)
        if (T[id] != NULL && (&T[id]->sleep == n || &T[id]->timeout == n))
            return id;
    FAIL("a heap node without a thread");
}


static void m_wake_fd(int fd) {
    while (F[fd].nrd > 0)
        m_make_ready(F[fd].rd[0]);
    while (F[fd].nwr > 0)
        m_make_ready(F[fd].wr[0]);
}


static void op_step(void) {
    unsigned calls = 0;
    int i, k, n, ret, io = 0, need;
    nscript = (int)(byte() % 5);
    for (i = 0; i < nscript; i++) {
        script[i].fd = (int)(byte() % NFD);
        script[i].events = byte() % 3 + 1;
    }
    failmask = byte();
    ncalls = 0;
    waited = 0;

    /* settle: the kernel is asked only where the interest changes */
    for (i = 0; i < nchg; i++) {
        struct mfd *f = &F[chg[i]];
        unsigned w = (f->server || f->nrd ? CPS_READ : 0) | (f->nwr ? CPS_WRITE : 0);
        if (w != f->kmask) {
            if (w != 0 && ((failmask >> (calls++ % 8)) & 1)) {
                m_wake_fd(chg[i]);
                f->server = 0;
                w = 0;
            }
            f->kmask = w;
        }
        f->changed = 0;
    }
    nchg = 0;

    /* wait: only with threads on descriptors or servers */
    for (i = 0; i < NTH; i++)
        io += M[i].st == M_IO;
    need = io > 0 || m_servers() > 0;
    if (!need)
        nscript = 0;

    /* fired: first reader, first writer; servers accept (Lua's part) */
    for (i = 0; i < nscript; i++) {
        int fd = script[i].fd;
        struct mfd *f = &F[fd];
        if (!f->exists)
            continue;
        if ((script[i].events & CPS_READ) && !f->server) {
            if (f->nrd > 0)
                m_make_ready(f->rd[0]);
            else
                m_mark(fd);
        }
        if (script[i].events & CPS_WRITE) {
            if (f->nwr > 0)
                m_make_ready(f->wr[0]);
            else
                m_mark(fd);
        }
    }

    /* timers: every pause deadline is past, no copas.timeout is due */
    while ((k = m_heap_min()) >= 0 && H[k].when < 0) {
        int id = owner_of(H[k].n);
        CHECK(H[k].n == &T[id]->sleep, "a copas.timeout in the past");
        m_make_ready(id);
    }

    /* run: what was ready when the phase began, each to its end */
    gen++;
    rnf = 0;
    phase = 0;
    n = rn;
    for (i = 0; i < n; i++) {
        int id = rq[0];
        m_ready_remove(id);
        M[id].st = M_RUNNING;
        m_drop(id);
    }

    ret = cps_loop_step(L, &loop, 0);
    CHECK(ret == (nscript > 0), "step returned %d, model %d", ret, nscript > 0);
    CHECK(waited == need, "step %s the poller", waited ? "waited on" : "did not ask");
    CHECK(ncalls == calls, "step asked the kernel %u times, model %u", ncalls, calls);
}


static void op_newset(void) {
    int i;
    for (i = 0; i < NSET; i++)
        if (!S[i].live) {
            size_t max = byte() % 4 + 1;
            memset(&S[i], 0, sizeof S[i]);
            CHECK((S[i].p = cps_taskset_new(max)) != NULL, "taskset_new failed");
            S[i].live = S[i].handle = 1;
            S[i].max = max;
            return;
        }
}


/* the set's Lua handle is collected */
static void op_dropset(void) {
    int s = pick_set();
    if (s < 0)
        return;
    S[s].p->handle = 0;
    S[s].handle = 0;
    cps_taskset_maybe_free(S[s].p);
    m_maybe_free(s);
}


static void setup(void) {
    int i;
    memset(T, 0, sizeof T);
    memset(M, 0, sizeof M);
    memset(F, 0, sizeof F);
    memset(S, 0, sizeof S);
    rn = rnf = hn = nchg = phase = 0;
    gen = limit = 0;
    hseq = 0;
    for (i = 0; i < NSET; i++)
        S[i].live = 0;
    CHECK(cps_loop_init(&loop, &fake_ops) == 0, "loop_init failed");
    /* what bind_loop.c gives the loop: the fd -> socket table (empty:
       no socket is claimed here) and hooks that do nothing */
    lua_newtable(L);
    loop.socks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    for (i = CPS_HOOK_END; i <= CPS_HOOK_DEBUG; i++) {
        luaL_loadstring(L, "return");
        lua_rawseti(L, -2, i);
    }
    loop.hooks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    loop.idle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    anchors = luaL_ref(L, LUA_REGISTRYINDEX);
}


/* cps_loop_close drops every thread; then the handles go */
static void teardown(void) {
    int i;
    cps_loop_close(L, &loop);
    for (i = 0; i < NTH; i++)
        if (M[i].st != M_FREE)
            m_drop(i);
    for (i = 0; i < NSET; i++)
        if (S[i].live) {
            CHECK(S[i].handle, "set %d lives on with neither handle nor threads", i);
            S[i].p->handle = 0;
            CHECK(S[i].p->refs == 0, "set %d still referenced after close", i);
            cps_taskset_maybe_free(S[i].p);
        }
    CHECK(lua_gettop(L) == 0, "Lua stack left with %d values", lua_gettop(L));
    /* free what this input allocated in Lua: libFuzzer runs a costly leak
       check after any input that leaves more allocations than it found */
    luaL_unref(L, LUA_REGISTRYINDEX, anchors);
    anchors = LUA_NOREF;
    lua_gc(L, LUA_GCCOLLECT, 0);
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (L == NULL)
        L = luaL_newstate();
    in = data;
    inlen = size;
    setup();
    while (inlen > 0) {
        switch (byte() % 17) {
        case 0: op_spawn(0); break;
        case 1: op_spawn(1); break;
        case 2: op_spawn_task(); break;
        case 3: op_begin(); break;
        case 4: op_pop(); break;
        case 5: op_step(); break;
        case 6: case 7: op_yield(); break;
        case 8: op_wakeup(); break;
        case 9: op_remove(); break;
        case 10: op_untask(); break;
        case 11: op_timeout(); break;
        case 12: op_timers(); break;
        case 13: op_fire(); break;
        case 14: op_reuse(); break;
        case 15: op_settle(); break;
        case 16:
            switch (byte() % 3) {
            case 0: op_newset(); break;
            case 1: op_dropset(); break;
            default: op_server(); break;
            }
            break;
        }
        check_all();
    }
    teardown();
    return 0;
}
