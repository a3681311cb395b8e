/*
** loop.h: the dispatcher. One struct cps_loop per loaded copas instance;
** bind_loop.c exposes it to Lua. A step reads as its phases:
**   settle interest -> wait -> fired descriptors -> due timers -> run
*/
#ifndef CPS_LOOP_H
#define CPS_LOOP_H

#include <lua.h>

#include "heap.h"
#include "poller.h"
#include "ready.h"
#include "sockfd.h"
#include "taskset.h"
#include "thread.h"
#include "waitset.h"

#define CPS_FIRED_MAX 1024

/* socket operations a thread may complete without waiting in one run
   before it yields a round, so that a socket that always has data cannot
   starve the others (API 1.5) */
#define CPS_SPEND_BUDGET 64

/* tags of heap nodes: which member of struct cps_thread a node is */
enum { CPS_NODE_SLEEP = 1, CPS_NODE_TIMEOUT = 2 };

/* Lua hooks the Lua layer installs, indices in the hooks table */
enum {
    CPS_HOOK_END = 1,       /* (co, err|nil, skt|nil, autoclose_skt|nil, errored) */
    CPS_HOOK_ACCEPT = 2,    /* (server) */
    CPS_HOOK_TIMEOUT = 3,   /* (callback, co) */
    CPS_HOOK_DEBUG = 4      /* ("resume", co) */
};

struct cps_stats {
    int on;
    unsigned long steps;
    double tot, min, max, min_ever, max_ever;   /* seconds in run phases */
    double start;                               /* wall clock of window */
};

struct cps_loop {
    const struct cps_poller_ops *ops;
    struct cps_poller *poller;
    struct cps_threads threads;
    struct cps_ready ready;
    struct cps_heap heap;
    struct cps_waitset ws;
    struct cps_fired fired[CPS_FIRED_MAX];
    struct cps_fdclasses fdclasses;
    size_t n_sleep;         /* CPS_T_SLEEP threads */
    size_t n_io;            /* CPS_T_IO threads */
    size_t n_io_deadline;   /* of which with a deadline */
    size_t n_idle;          /* CPS_T_FOREVER and CPS_T_JOIN threads */
    size_t n_idle_timeout;  /* CPS_T_FOREVER threads with an armed timeout */
    size_t n_timeouts;      /* armed copas.timeout()s */
    size_t n_servers;
    size_t n_queued;        /* CPS_T_QUEUED threads */
    struct cps_thread *current;
    int stepping;
    int debug;
    unsigned spent;         /* operations of the running thread, see cps_loop_spend */
    int socks_ref;          /* registry: table fd -> socket object */
    int hooks_ref;          /* registry: weak {loop}; the hooks are its user value */
    int idle_ref;           /* registry: weak-valued table thread -> coroutine */
    struct cps_stats stats;
};

/* count an operation that completed without waiting: 1 when the running
   copas thread has used its budget and should yield a round */
static inline int cps_loop_spend(struct cps_loop *loop) {
    if (++loop->spent < CPS_SPEND_BUDGET)
        return 0;
    loop->spent = 0;
    return loop->current != NULL;
}

int cps_loop_init(struct cps_loop *loop, const struct cps_poller_ops *ops);
/* release everything; L is used to drop registry references */
void cps_loop_close(lua_State *L, struct cps_loop *loop);

/* one round: 1 if descriptors fired, 0 if not, -errno if the poller failed */
int cps_loop_step(lua_State *L, struct cps_loop *loop, double timeout);

/* nothing left that could run */
int cps_loop_finished(const struct cps_loop *loop);

/* a new thread running the function below the nargs arguments at the
   top of L (all popped); `first`: ahead of the threads already ready (an
   accepted connection's handler). NULL on memory errors */
struct cps_thread *cps_loop_spawn(lua_State *L, struct cps_loop *loop, int nargs, int first);

/* resume a READY thread now, outside the run phase (UDP addserver) */
void cps_loop_run_now(lua_State *L, struct cps_loop *loop, struct cps_thread *th);

/* wake a thread in pause/pauseforever: 1, or 0 when it is not sleeping */
int cps_loop_wakeup(lua_State *L, struct cps_loop *loop, struct cps_thread *th);

/* detach `th` from what it waits on and make it ready */
void cps_loop_make_ready(struct cps_loop *loop, struct cps_thread *th, int resume);

/* forget `th` entirely (not running); pushes its autoclose socket or nil */
void cps_loop_drop(lua_State *L, struct cps_loop *loop, struct cps_thread *th);

/* drop every thread but the running ones; pushes a table of sockets to close */
void cps_loop_remove_all(lua_State *L, struct cps_loop *loop);

/* arm (delay > 0) or cancel (delay <= 0) the copas.timeout of `th`;
   the callback is at the top of L when arming (popped); the caller has
   reserved room in the heap */
void cps_loop_set_timeout(lua_State *L, struct cps_loop *loop, struct cps_thread *th, double delay);

/* 1 when the socket at `idx`, of trusted class cls (sockfd.h; -1: none),
   is a LuaSocket TCP client whose layout is recognised (lsock.h) */
int cps_loop_inplace(lua_State *L, const struct cps_loop *loop, int cls, int idx);

/* the entry of the descriptor of the socket at `idx` when the socket is
   the object the loop claimed it for and marked as its own (a LuaSocket
   TCP client, Lua 5.3 and later), else NULL; no table lookup (loop.c) */
struct cps_fdent *cps_loop_owned(lua_State *L, const struct cps_loop *loop, int idx);

/* wake everyone waiting on the socket at `idx` and forget its descriptor */
void cps_loop_forget_socket(lua_State *L, struct cps_loop *loop, int idx);

/* register/unregister the socket at `idx` as a server: 0 or -errno */
int cps_loop_add_server(lua_State *L, struct cps_loop *loop, int idx);
void cps_loop_remove_server(lua_State *L, struct cps_loop *loop, int idx);

/* the thread of coroutine co, or NULL; a pauseforever thread whose
   coroutine was collected is purged on the way */
struct cps_thread *cps_loop_thread(lua_State *L, struct cps_loop *loop, lua_State *co);

/* purge every collected pauseforever thread */
void cps_loop_sweep(lua_State *L, struct cps_loop *loop);

/* push the message for a poller error (-err from a backend) */
void cps_loop_pusherror(lua_State *L, int err);

/* task sets */
struct cps_thread *cps_loop_spawn_task(lua_State *L, struct cps_loop *loop,
                                       struct cps_taskset *s, int nargs);
void cps_loop_untask(struct cps_loop *loop, struct cps_thread *th);

#endif
