/*
** thread.h: what the core knows about each Copas thread, and the table
** that finds it from its coroutine. Plain C: the coroutine is an opaque
** pointer here; loop.c is where it gets resumed.
*/
#ifndef CPS_THREAD_H
#define CPS_THREAD_H

#include <stddef.h>

#include "heap.h"
#include "queue.h"

struct cps_taskset;

enum cps_tstate {
    CPS_T_READY,     /* in the ready queue */
    CPS_T_RUNNING,   /* being resumed (possibly with a nested resume above) */
    CPS_T_SLEEP,     /* pause(s>0): in the heap */
    CPS_T_FOREVER,   /* pauseforever: only wakeup() or its timeout ends it */
    CPS_T_IO,        /* in a descriptor's reader or writer FIFO */
    CPS_T_JOIN,      /* waiting for a task set to empty */
    CPS_T_QUEUED,    /* a task waiting for a slot in its set */
    CPS_T_GONE       /* in no queue: being torn down */
};

/* what the thread gets back from its yield when resumed */
enum cps_resume {
    CPS_R_START,     /* first run: its arguments are already on its stack */
    CPS_R_NOTHING,
    CPS_R_ELAPSED,   /* seconds since it yielded */
    CPS_R_READY,     /* true: the descriptor is ready (or gone: retry) */
    CPS_R_TIMEOUT,   /* false: the wait's deadline passed */
    CPS_R_ERROR      /* a message: the poller refused the descriptor */
};

#define CPS_TF_REMOVED   1u  /* removethread() while running: drop at yield */
#define CPS_TF_AUTOCLOSE 2u  /* sock_ref is closed when the thread ends */

struct cps_thread {
    void *co;                       /* the lua_State of the coroutine */
    int ref;                        /* registry reference keeping it alive */
    int state;                      /* enum cps_tstate */
    int resume;                     /* enum cps_resume */
    int nargs;                      /* CPS_R_START: arguments on its stack */
    int err;                        /* CPS_R_ERROR: errno from the poller */
    unsigned flags;
    double since;                   /* when it yielded, for CPS_R_ELAPSED */
    unsigned long gen;              /* ready-queue generation it joined in */
    struct cps_link link;           /* ready queue, fd FIFO or set queue */
    struct cps_heap_node sleep;     /* pause deadline or I/O deadline */
    struct cps_heap_node timeout;   /* copas.timeout() */
    int timeout_cb;                 /* registry ref of its callback */
    int fd;                         /* CPS_T_IO: the descriptor */
    unsigned dir;                   /* CPS_T_IO: CPS_READ or CPS_WRITE */
    int wake_fd;                    /* descriptor whose readiness woke it, or -1 */
    int sock_ref;                   /* accepted client socket, or LUA_NOREF */
    struct cps_taskset *set;        /* the task set counting it, or NULL */
    struct cps_taskset *join;       /* CPS_T_JOIN: the set it waits for */
};

/* open-addressing table: coroutine pointer -> thread */
struct cps_threads {
    struct cps_thread **slots;
    size_t cap, len;
};

void cps_threads_init(struct cps_threads *t);
void cps_threads_free(struct cps_threads *t);

/* room for one more entry: 0 or -ENOMEM */
int cps_threads_reserve(struct cps_threads *t);

/* insert (after reserve; cannot fail), look up, delete */
void cps_threads_put(struct cps_threads *t, struct cps_thread *th);
struct cps_thread *cps_threads_get(const struct cps_threads *t, const void *co);
void cps_threads_del(struct cps_threads *t, const void *co);

#endif
