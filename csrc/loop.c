/*
** loop.c: the dispatcher. Owns the threads, the ready queue, the timer
** heap and the waiting sets, and resumes coroutines. User Lua only runs
** inside lua_resume (its status read and interpreted) or inside lua_pcall
** of a hook the Lua layer installed, so a Lua error never unwinds through
** a half-updated core.
*/
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#include "compat.h"
#include "clock.h"
#include "loop.h"
#include "lsock.h"

/* the queue markers threads yield with; their addresses are the values */
extern const char cps_mark_read, cps_mark_write, cps_mark_sleep, cps_mark_join;

static const char bad_yield[] =
    "coroutine.yield was called without a resume first, user-code cannot yield to Copas";


int cps_loop_init(struct cps_loop *loop, const struct cps_poller_ops *ops) {
    int err;
    memset(loop, 0, sizeof *loop);
    loop->ops = ops;
    cps_threads_init(&loop->threads);
    cps_ready_init(&loop->ready);
    cps_heap_init(&loop->heap);
    cps_fdclasses_init(&loop->fdclasses);
    cps_waitset_init(&loop->ws);
    loop->socks_ref = loop->hooks_ref = loop->idle_ref = LUA_NOREF;
    if ((err = ops->create(&loop->poller)) < 0)
        loop->poller = NULL;
    return err;
}


/* ---------------------------------------------------------------- hooks */

static void push_ref(lua_State *L, int ref) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
}


/* call hook `which` with the `nargs` values on top of L, protected. The
   hooks are the loop's user value, reached through a weak reference to the
   loop; that is gone only while the collected loop is being closed, and
   then the values are dropped. */
static void call_hook(lua_State *L, struct cps_loop *loop, int which, int nargs) {
    push_ref(L, loop->hooks_ref);
    lua_rawgeti(L, -1, 1);
    if (lua_type(L, -1) != LUA_TUSERDATA) {
        lua_pop(L, nargs + 2);
        return;
    }
    cps_getuservalue(L, -1);
    lua_rawgeti(L, -1, which);
    lua_replace(L, -4);
    lua_pop(L, 2);
    lua_insert(L, -(nargs + 1));
    if (lua_pcall(L, nargs, 0, 0) != LUA_OK) {
        (void)fprintf(stderr, "copas: internal hook failed: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}


/* socks[fd] = value at top (popped); nil forgets */
static void set_sock(lua_State *L, struct cps_loop *loop, int fd) {
    push_ref(L, loop->socks_ref);
    lua_insert(L, -2);
    lua_rawseti(L, -2, fd);
    lua_pop(L, 1);
}


static void push_sock(lua_State *L, struct cps_loop *loop, int fd) {
    push_ref(L, loop->socks_ref);
    lua_rawgeti(L, -1, fd);
    lua_remove(L, -2);
}


/*
** A thread in pauseforever with no timeout is held weakly, as Copas holds
** its lethargic threads: if nobody else refers to the coroutine it is
** collected, and its thread is purged when next met (lookups, sweeps).
*/
static void weaken(lua_State *L, struct cps_loop *loop, struct cps_thread *th) {
    push_ref(L, loop->idle_ref);                /* idle */
    lua_pushlightuserdata(L, th);
    push_ref(L, th->ref);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, th->ref);
    th->ref = LUA_NOREF;
}


/* 1 when the coroutine of a weakly held thread is still alive */
static int alive(lua_State *L, struct cps_loop *loop, struct cps_thread *th) {
    int yes;
    push_ref(L, loop->idle_ref);
    lua_pushlightuserdata(L, th);
    lua_rawget(L, -2);
    yes = lua_tothread(L, -1) == (lua_State *)th->co;
    lua_pop(L, 2);
    return yes;
}


/* hold it strongly again (it is alive) */
static void strengthen(lua_State *L, struct cps_loop *loop, struct cps_thread *th) {
    if (th->ref != LUA_NOREF)
        return;
    push_ref(L, loop->idle_ref);                /* idle */
    lua_pushlightuserdata(L, th);
    lua_rawget(L, -2);                          /* idle co */
    th->ref = luaL_ref(L, LUA_REGISTRYINDEX);   /* idle */
    lua_pushlightuserdata(L, th);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}


/* is the socket at idx the one descriptor fd is registered for? */
static int same_sock(lua_State *L, struct cps_loop *loop, int fd, int idx) {
    int eq;
    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    push_sock(L, loop, fd);
    eq = !lua_isnil(L, -1) && lua_rawequal(L, -1, idx);
    lua_pop(L, 1);
    return eq;
}


/* ------------------------------------------------------- thread states */

static void untimeout(struct cps_loop *loop, struct cps_thread *th) {
    if (!cps_heap_contains(&th->timeout))
        return;
    cps_heap_remove(&loop->heap, &th->timeout);
    loop->n_timeouts--;
    if (th->state == CPS_T_FOREVER)
        loop->n_idle_timeout--;
}


/* take `th` out of whatever it waits in; it is left in no queue */
static void detach(struct cps_loop *loop, struct cps_thread *th) {
    switch (th->state) {
    case CPS_T_READY:
        cps_ready_remove(&loop->ready, th);
        break;
    case CPS_T_SLEEP:
        cps_heap_remove(&loop->heap, &th->sleep);
        loop->n_sleep--;
        break;
    case CPS_T_FOREVER:
        loop->n_idle--;
        if (cps_heap_contains(&th->timeout))
            loop->n_idle_timeout--;
        break;
    case CPS_T_IO:
        cps_link_remove(&th->link);
        loop->n_io--;
        cps_waitset_mark(&loop->ws, th->fd);
        if (cps_heap_contains(&th->sleep)) {
            cps_heap_remove(&loop->heap, &th->sleep);
            loop->n_io_deadline--;
        }
        break;
    case CPS_T_JOIN:
        cps_link_remove(&th->link);
        loop->n_idle--;
        th->join->refs--;
        cps_taskset_maybe_free(th->join);
        th->join = NULL;
        break;
    case CPS_T_QUEUED:
        cps_link_remove(&th->link);
        th->set->nqueued--;
        loop->n_queued--;
        break;
    default:
        break;
    }
    th->state = CPS_T_RUNNING;
}


void cps_loop_make_ready(struct cps_loop *loop, struct cps_thread *th, int resume) {
    detach(loop, th);
    th->resume = resume;
    th->state = CPS_T_READY;
    cps_ready_push(&loop->ready, th);
}


static void wake_all(struct cps_loop *loop, struct cps_link *q, int resume, int err) {
    struct cps_link *l;
    while ((l = cps_queue_head(q)) != NULL) {
        struct cps_thread *th = cps_container_of(l, struct cps_thread, link);
        cps_loop_make_ready(loop, th, resume);
        th->err = err;
    }
}


/* ------------------------------------------------------------ task sets */

/* start queued tasks while slots are free; release joiners when idle */
static void refill(struct cps_loop *loop, struct cps_taskset *s) {
    struct cps_link *l;
    while (s->running < s->max && (l = cps_queue_head(&s->queued)) != NULL) {
        struct cps_thread *th = cps_container_of(l, struct cps_thread, link);
        cps_loop_make_ready(loop, th, CPS_R_START);
        s->running++;
    }
    if (cps_taskset_idle(s))
        wake_all(loop, &s->joiners, CPS_R_NOTHING, 0);
}


/* `th` no longer belongs to its set (ended, removed, or let go) */
void cps_loop_untask(struct cps_loop *loop, struct cps_thread *th) {
    struct cps_taskset *s = th->set;
    if (s == NULL)
        return;
    if (th->state == CPS_T_QUEUED)
        detach(loop, th);
    else
        s->running--;
    th->set = NULL;
    /* still counted while refilling: waking the last joiner must not
       free the set under wake_all's feet */
    refill(loop, s);
    s->refs--;
    cps_taskset_maybe_free(s);
}


/* -------------------------------------------------------------- lookup */

static void purge(lua_State *L, struct cps_loop *loop, struct cps_thread *th) {
    cps_loop_drop(L, loop, th);
    lua_pop(L, 1);
}


struct cps_thread *cps_loop_thread(lua_State *L, struct cps_loop *loop, lua_State *co) {
    struct cps_thread *th = cps_threads_get(&loop->threads, co);
    if (th != NULL && th->ref == LUA_NOREF && !alive(L, loop, th)) {
        purge(L, loop, th);
        return NULL;
    }
    return th;
}


void cps_loop_sweep(lua_State *L, struct cps_loop *loop) {
    struct cps_threads *t = &loop->threads;
    size_t i = 0;
    while (i < t->cap) {                        /* deletion shifts slots back */
        struct cps_thread *th = t->slots[i];
        if (th != NULL && th->ref == LUA_NOREF && !alive(L, loop, th))
            purge(L, loop, th);
        else
            i++;
    }
}


/* --------------------------------------------------------------- spawn */

static struct cps_thread *new_thread(lua_State *L, struct cps_loop *loop, int nargs) {
    struct cps_thread *th;
    lua_State *co;
    int ref;
    if (cps_threads_reserve(&loop->threads) < 0)
        return NULL;
    co = lua_newthread(L);                      /* fn args... co */
    if (!lua_checkstack(co, nargs + 1)) {       /* a new stack is small */
        lua_pop(L, 1);
        return NULL;
    }
    cps_loop_thread(L, loop, co);               /* purges a dead namesake */
    lua_insert(L, -(nargs + 2));                /* co fn args... */
    lua_xmove(L, co, nargs + 1);                /* co */
    ref = luaL_ref(L, LUA_REGISTRYINDEX);       /* (empty) */
    /* allocated after the calls that raise when Lua runs out of memory */
    if ((th = calloc(1, sizeof *th)) == NULL) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return NULL;
    }
    th->co = co;
    th->ref = ref;
    th->nargs = nargs;
    th->resume = CPS_R_START;
    th->fd = th->wake_fd = -1;
    th->sock_ref = th->timeout_cb = LUA_NOREF;
    th->sleep.index = th->timeout.index = CPS_HEAP_NONE;
    th->sleep.kind = CPS_NODE_SLEEP;
    th->timeout.kind = CPS_NODE_TIMEOUT;
    cps_queue_init(&th->link);
    th->state = CPS_T_RUNNING;                  /* in no queue yet */
    cps_threads_put(&loop->threads, th);
    return th;
}


struct cps_thread *cps_loop_spawn(lua_State *L, struct cps_loop *loop, int nargs, int first) {
    struct cps_thread *th = new_thread(L, loop, nargs);
    if (th != NULL) {
        th->state = CPS_T_READY;
        if (first)
            cps_ready_push_front(&loop->ready, th);
        else
            cps_ready_push(&loop->ready, th);
    }
    return th;
}


struct cps_thread *cps_loop_spawn_task(lua_State *L, struct cps_loop *loop,
                                       struct cps_taskset *s, int nargs) {
    struct cps_thread *th = new_thread(L, loop, nargs);
    if (th == NULL)
        return NULL;
    th->set = s;
    s->refs++;
    if (s->running < s->max) {
        s->running++;
        th->state = CPS_T_READY;
        cps_ready_push(&loop->ready, th);
    } else {
        th->state = CPS_T_QUEUED;
        cps_queue_push(&s->queued, &th->link);
        s->nqueued++;
        loop->n_queued++;
    }
    return th;
}


/* ---------------------------------------------------------------- ends */

static void release(lua_State *L, struct cps_loop *loop, struct cps_thread *th) {
    if (th->ref == LUA_NOREF && loop->idle_ref != LUA_NOREF) {
        push_ref(L, loop->idle_ref);
        lua_pushlightuserdata(L, th);
        lua_pushnil(L);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    cps_threads_del(&loop->threads, th->co);
    luaL_unref(L, LUA_REGISTRYINDEX, th->ref);
    luaL_unref(L, LUA_REGISTRYINDEX, th->sock_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, th->timeout_cb);
    free(th);
}


/* leave every queue, set and timeout; state stays "in no queue" */
static void unhook(struct cps_loop *loop, struct cps_thread *th) {
    cps_loop_untask(loop, th);
    detach(loop, th);
    untimeout(loop, th);
}


/*
** A thread is over: it returned, failed (its error value on top of L,
** popped) or was removed. The Lua layer hears of it when it must act:
** an error handler to call, an autoclose socket to close, or debug.
*/
static void retire(lua_State *L, struct cps_loop *loop, struct cps_thread *th, int errored) {
    int wake_fd = th->wake_fd;
    unhook(loop, th);
    if (errored || th->sock_ref != LUA_NOREF || loop->debug) {
        if (!errored)
            lua_pushnil(L);                     /* err */
        push_ref(L, th->ref);
        lua_insert(L, -2);                      /* co err */
        if (wake_fd >= 0)
            push_sock(L, loop, wake_fd);
        else
            push_ref(L, th->sock_ref);          /* nil when LUA_NOREF */
        if (th->flags & CPS_TF_AUTOCLOSE)
            push_ref(L, th->sock_ref);
        else
            lua_pushnil(L);
        lua_pushboolean(L, errored);            /* co err skt close errored */
        call_hook(L, loop, CPS_HOOK_END, 5);
    }
    release(L, loop, th);
}


void cps_loop_drop(lua_State *L, struct cps_loop *loop, struct cps_thread *th) {
    unhook(loop, th);
    if (th->flags & CPS_TF_AUTOCLOSE)
        push_ref(L, th->sock_ref);
    else
        lua_pushnil(L);
    release(L, loop, th);
}


/* ------------------------------------------------------------- waiting */

/*
** Owned sockets. Finding out whether the socket a thread waits on is the
** one its descriptor is registered for takes a registry and a table lookup
** (same_sock), and its descriptor a class check; together a tenth of the
** instructions of an echo round trip. A LuaSocket TCP client the core
** claims a descriptor for is also marked as the loop's own: the loop's
** address goes into the object's user value (LuaSocket leaves it unused)
** and the object's address into the descriptor's entry. Later both are
** compared, with no lookup. Both must match: an object collected while
** registered and a new one made at the same address has no user value,
** so a reused address is never mistaken for the claimed socket. Lua 5.1
** has no user values on such objects and always looks up.
*/

int cps_loop_inplace(lua_State *L, const struct cps_loop *loop, int cls, int idx) {
    return cls >= 0 && loop->fdclasses.tcp_client[cls] && cps_lsock_layout(L, idx) != NULL;
}


/* mark the socket at the top of L, just claimed for entry e, as owned (an
   object without a user value slot keeps none: it is never found owned) */
static void own(lua_State *L, struct cps_loop *loop, struct cps_fdent *e) {
    e->owner = NULL;
    e->mark = 0;
#if LUA_VERSION_NUM >= 503
    if (!cps_loop_inplace(L, loop, cps_sockfd_class(L, &loop->fdclasses, -1), lua_gettop(L)))
        return;
    lua_pushlightuserdata(L, loop);
    cps_setuservalue(L, -2);
    e->owner = lua_touserdata(L, -1);
#else
    (void)L;
    (void)loop;
#endif
}


struct cps_fdent *cps_loop_owned(lua_State *L, const struct cps_loop *loop, int idx) {
#if LUA_VERSION_NUM >= 503
    const struct cps_lsock *t;
    struct cps_fdent *e;
    const void *mark;
    if (lua_type(L, idx) != LUA_TUSERDATA)
        return NULL;
    cps_getuservalue(L, idx);
    mark = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (mark != loop)
        return NULL;
    t = lua_touserdata(L, idx);
    e = cps_waitset_find(&loop->ws, t->sock);
    return e != NULL && e->owner == t ? e : NULL;
#else
    (void)L;
    (void)loop;
    (void)idx;
    return NULL;
#endif
}


/* the socket at the top of L takes descriptor fd (entry e) */
static void claim(lua_State *L, struct cps_loop *loop, int fd, struct cps_fdent *e) {
    if (e->claimed) {
        /* the old socket was closed behind our back: its waiters retry
           and meet "closed"; the kernel interest is unknown now */
        wake_all(loop, &e->readers, CPS_R_READY, 0);
        wake_all(loop, &e->writers, CPS_R_READY, 0);
        if (e->server) {
            e->server = 0;
            loop->n_servers--;
        }
    }
    /* the kernel may have dropped the descriptor with its old owner:
       the next watch adds it anew (the backends fall back to modify) */
    e->kmask = 0;
    e->claimed = 1;
    lua_pushvalue(L, -1);
    set_sock(L, loop, fd);
    own(L, loop, e);
}


/* fd (entry e) has no socket any more */
static void unclaim(lua_State *L, struct cps_loop *loop, int fd, struct cps_fdent *e) {
    e->claimed = 0;
    e->owner = NULL;
    e->mark = 0;
    lua_pushnil(L);
    set_sock(L, loop, fd);
}


/* `th` waits for fd in direction dir; its socket is at the top of L
   (owned: known to be the one fd is registered for) */
static void wait_io(lua_State *L, struct cps_loop *loop, struct cps_thread *th, int fd,
                    int owned, unsigned dir, int has_deadline, double deadline) {
    struct cps_fdent *e;
    if (fd < 0) {                               /* closed: the retry says so */
        cps_loop_make_ready(loop, th, CPS_R_READY);
        return;
    }
    if ((e = cps_waitset_get(&loop->ws, fd)) == NULL) {
        cps_loop_make_ready(loop, th, CPS_R_ERROR);
        th->err = ENOMEM;
        return;
    }
    if (!owned && !same_sock(L, loop, fd, -1))
        claim(L, loop, fd, e);
    if (has_deadline && cps_heap_reserve(&loop->heap, 1) == 0) {
        cps_heap_push(&loop->heap, &th->sleep, deadline);
        loop->n_io_deadline++;
    }
    cps_queue_push(dir == CPS_READ ? &e->readers : &e->writers, &th->link);
    th->state = CPS_T_IO;
    th->fd = fd;
    th->dir = dir;
    loop->n_io++;
    cps_waitset_mark(&loop->ws, fd);
}


static void wait_sleep(lua_State *L, struct cps_loop *loop, struct cps_thread *th, double s,
                       int held) {
    th->since = cps_clock_now();
    if (s > 0 && cps_heap_reserve(&loop->heap, 1) == 0) {
        cps_heap_push(&loop->heap, &th->sleep, th->since + s);
        th->state = CPS_T_SLEEP;
        loop->n_sleep++;
    } else if (s < 0) {
        th->state = CPS_T_FOREVER;
        loop->n_idle++;
        if (cps_heap_contains(&th->timeout))
            loop->n_idle_timeout++;
        else if (!held)
            weaken(L, loop, th);
    } else {
        th->resume = CPS_R_ELAPSED;
        th->state = CPS_T_READY;
        cps_ready_push(&loop->ready, th);
    }
}


static void wait_join(struct cps_loop *loop, struct cps_thread *th, struct cps_taskset *s) {
    if (s == NULL || cps_taskset_idle(s)) {
        th->resume = CPS_R_NOTHING;
        th->state = CPS_T_READY;
        cps_ready_push(&loop->ready, th);
        return;
    }
    th->state = CPS_T_JOIN;
    th->join = s;
    s->refs++;
    loop->n_idle++;
    cps_queue_push(&s->joiners, &th->link);
}


/*
** Interpret what `th` yielded: (seconds|nil, SLEEP), (socket, READ|WRITE
** [, deadline]) or (set, JOIN). Anything else is user code yielding to
** the scheduler, reported as an error of the thread.
*/
static void on_yield(lua_State *L, struct cps_loop *loop, struct cps_thread *th, int nres) {
    lua_State *co = th->co;
    int base = lua_gettop(co) - nres + 1;
    const void *mark = nres >= 2 && lua_type(co, base + 1) == LUA_TLIGHTUSERDATA
                     ? lua_touserdata(co, base + 1) : NULL;
    th->wake_fd = -1;
    th->resume = CPS_R_NOTHING;
    if (th->flags & CPS_TF_REMOVED) {
        lua_pop(co, nres);
        retire(L, loop, th, 0);
    } else if (mark == &cps_mark_sleep) {
        double s = lua_type(co, base) == LUA_TNUMBER ? lua_tonumber(co, base) : 0;
        int held = nres >= 3 && lua_toboolean(co, base + 2);
        lua_pop(co, nres);
        wait_sleep(L, loop, th, s != s ? 0 : s, held);
    } else if (mark == &cps_mark_read || mark == &cps_mark_write) {
        int has_deadline = nres >= 3 && lua_type(co, base + 2) == LUA_TNUMBER;
        double deadline = has_deadline ? lua_tonumber(co, base + 2) : 0;
        int fd, owned;
        lua_pushvalue(co, base);
        lua_xmove(co, L, 1);                    /* socket on L */
        lua_pop(co, nres);
        owned = cps_loop_owned(L, loop, -1) != NULL;
        fd = owned ? *(const int *)lua_touserdata(L, -1) : cps_sockfd(L, &loop->fdclasses, -1);
        wait_io(L, loop, th, fd, owned, mark == &cps_mark_read ? CPS_READ : CPS_WRITE,
                has_deadline, deadline);
        lua_pop(L, 1);
    } else if (mark == &cps_mark_join) {
        struct cps_taskset **ps = lua_touserdata(co, base);
        lua_pop(co, nres);
        wait_join(loop, th, ps ? *ps : NULL);
    } else {
        lua_pop(co, nres);
        lua_pushstring(L, bad_yield);
        retire(L, loop, th, 1);
    }
}


void cps_loop_pusherror(lua_State *L, int err) {
    if (err == ERANGE)
        lua_pushfstring(L, "descriptor does not fit the select backend (FD_SETSIZE is %d);"
                        " use COPAS_BACKEND=epoll or poll", (int)FD_SETSIZE);
    else
        lua_pushstring(L, strerror(err));
}


/* push what the yield of `th` returns; the number of values */
static int push_resume(struct cps_thread *th) {
    lua_State *co = th->co;
    lua_checkstack(co, 2);
    switch (th->resume) {
    case CPS_R_START:
        return th->nargs;
    case CPS_R_ELAPSED: {
        double dt = cps_clock_now() - th->since;
        lua_pushnumber(co, dt > 0 ? dt : 0);
        return 1;
    }
    case CPS_R_READY:
        lua_pushboolean(co, 1);
        return 1;
    case CPS_R_TIMEOUT:
        lua_pushboolean(co, 0);
        return 1;
    case CPS_R_ERROR:
        cps_loop_pusherror(co, th->err);
        return 1;
    default:
        return 0;
    }
}


static void run_thread(lua_State *L, struct cps_loop *loop, struct cps_thread *th) {
    lua_State *co = th->co;
    struct cps_thread *prev = loop->current;
    int nargs, nres = 0, status;
    if (loop->debug) {
        push_ref(L, th->ref);
        lua_pushliteral(L, "resume");
        lua_insert(L, -2);
        call_hook(L, loop, CPS_HOOK_DEBUG, 2);
    }
    nargs = push_resume(th);
    th->state = CPS_T_RUNNING;
    loop->current = th;
    loop->spent = 0;
    status = cps_resume(co, L, nargs, &nres);
    loop->current = prev;
    if (status == LUA_YIELD) {
        on_yield(L, loop, th, nres);
    } else if (status == LUA_OK) {
        lua_pop(co, nres);
        retire(L, loop, th, 0);
    } else {
        lua_pushvalue(co, -1);
        lua_xmove(co, L, 1);
        retire(L, loop, th, 1);
    }
}


int cps_loop_wakeup(lua_State *L, struct cps_loop *loop, struct cps_thread *th) {
    if (th->state != CPS_T_SLEEP && th->state != CPS_T_FOREVER)
        return 0;
    strengthen(L, loop, th);
    cps_loop_make_ready(loop, th, CPS_R_ELAPSED);
    return 1;
}


void cps_loop_run_now(lua_State *L, struct cps_loop *loop, struct cps_thread *th) {
    detach(loop, th);
    run_thread(L, loop, th);
}


/* ------------------------------------------------------------ timeouts */

void cps_loop_set_timeout(lua_State *L, struct cps_loop *loop, struct cps_thread *th, double delay) {
    untimeout(loop, th);
    luaL_unref(L, LUA_REGISTRYINDEX, th->timeout_cb);
    th->timeout_cb = LUA_NOREF;
    if (delay > 0) {                            /* the caller reserved room */
        th->timeout_cb = luaL_ref(L, LUA_REGISTRYINDEX);
        cps_heap_push(&loop->heap, &th->timeout, cps_clock_now() + delay);
        loop->n_timeouts++;
        if (th->state == CPS_T_FOREVER)
            loop->n_idle_timeout++;
    }
}


static void fire_timeout(lua_State *L, struct cps_loop *loop, struct cps_thread *th) {
    int cb = th->timeout_cb;
    untimeout(loop, th);
    th->timeout_cb = LUA_NOREF;
    push_ref(L, cb);
    push_ref(L, th->ref);
    luaL_unref(L, LUA_REGISTRYINDEX, cb);
    call_hook(L, loop, CPS_HOOK_TIMEOUT, 2);
}


/* ------------------------------------------------------------- sockets */

static void forget_fd(lua_State *L, struct cps_loop *loop, int fd, struct cps_fdent *e) {
    wake_all(loop, &e->readers, CPS_R_READY, 0);
    wake_all(loop, &e->writers, CPS_R_READY, 0);
    if (e->server) {
        e->server = 0;
        loop->n_servers--;
    }
    if (e->kmask) {
        loop->ops->unwatch(loop->poller, fd);
        e->kmask = 0;
    }
    unclaim(L, loop, fd, e);
}


void cps_loop_forget_socket(lua_State *L, struct cps_loop *loop, int idx) {
    int fd = cps_sockfd(L, &loop->fdclasses, idx);
    struct cps_fdent *e = cps_waitset_find(&loop->ws, fd);
    if (e != NULL && e->claimed && same_sock(L, loop, fd, idx))
        forget_fd(L, loop, fd, e);
}


int cps_loop_add_server(lua_State *L, struct cps_loop *loop, int idx) {
    int fd = cps_sockfd(L, &loop->fdclasses, idx), err;
    struct cps_fdent *e;
    if (fd < 0)
        return -EBADF;
    if ((e = cps_waitset_get(&loop->ws, fd)) == NULL)
        return -ENOMEM;
    if (!same_sock(L, loop, fd, idx)) {
        lua_pushvalue(L, idx);
        claim(L, loop, fd, e);
        lua_pop(L, 1);
    }
    if (e->server)
        return 0;
    err = loop->ops->watch(loop->poller, fd, e->kmask, cps_waitset_wanted(e) | CPS_READ);
    if (err < 0)
        return err;
    e->kmask = cps_waitset_wanted(e) | CPS_READ;
    e->server = 1;
    loop->n_servers++;
    return 0;
}


void cps_loop_remove_server(lua_State *L, struct cps_loop *loop, int idx) {
    int fd = cps_sockfd(L, &loop->fdclasses, idx);
    struct cps_fdent *e = cps_waitset_find(&loop->ws, fd);
    if (e == NULL || !e->server || !same_sock(L, loop, fd, idx))
        return;
    e->server = 0;
    loop->n_servers--;
    cps_waitset_mark(&loop->ws, fd);
}


/* ---------------------------------------------------------------- step */

/* make the kernel's interest match the waiting sets */
static void settle(lua_State *L, struct cps_loop *loop) {
    struct cps_waitset *ws = &loop->ws;
    int i;
    for (i = 0; i < ws->nchanged; i++) {
        int fd = ws->changed[i];
        struct cps_fdent *e = ws->ents[fd];
        unsigned w = cps_waitset_wanted(e);
        /* e->changed stays set until the entry is done: waking its waiters
           below marks it again, and a second listing could run past the
           list's one slot per descriptor */
        if (w != e->kmask) {
            int err;
            if (w == 0) {
                loop->ops->unwatch(loop->poller, fd);
            } else if ((err = loop->ops->watch(loop->poller, fd, e->kmask, w)) < 0) {
                int gone = (err == -EBADF || err == -ENOENT);
                wake_all(loop, &e->readers, gone ? CPS_R_READY : CPS_R_ERROR, -err);
                wake_all(loop, &e->writers, gone ? CPS_R_READY : CPS_R_ERROR, -err);
                if (e->server) {
                    e->server = 0;
                    loop->n_servers--;
                }
                w = 0;
            }
            e->kmask = w;
        }
        e->changed = 0;
        if (w == 0 && e->claimed)
            unclaim(L, loop, fd, e);
    }
    ws->nchanged = 0;
}


/* How long the poller may block: 0 when something is runnable, else until
   the earliest deadline, capped by `timeout` (< 0: no cap). Fills *ts and
   returns it, or NULL to block until an event. Nanoseconds are rounded up:
   never early. */
static struct timespec *wait_time(struct cps_loop *loop, double timeout, struct timespec *ts) {
    double d = -1, ns;
    long nsl;
    if (loop->ready.len) {
        d = 0;
    } else if (loop->heap.len) {
        d = cps_heap_top_when(&loop->heap) - cps_clock_now();
        if (d < 0)
            d = 0;
    }
    if (timeout >= 0 && (d < 0 || timeout < d))
        d = timeout;
    if (d < 0)
        return NULL;
    if (d >= (double)INT_MAX) {
        ts->tv_sec = INT_MAX;
        ts->tv_nsec = 0;
        return ts;
    }
    ts->tv_sec = (time_t)d;
    ns = (d - (double)ts->tv_sec) * 1e9;
    nsl = (long)ns;
    nsl += (double)nsl < ns;
    if (nsl >= 1000000000L) {
        ts->tv_sec++;
        nsl = 0;
    }
    ts->tv_nsec = nsl;
    return ts;
}


static void fired(lua_State *L, struct cps_loop *loop, int n) {
    int i;
    for (i = 0; i < n; i++) {
        int fd = loop->fired[i].fd;
        unsigned ev = loop->fired[i].events;
        struct cps_fdent *e = cps_waitset_find(&loop->ws, fd);
        struct cps_link *l;
        if (e == NULL)
            continue;
        if (ev & CPS_READ) {
            if (e->server) {
                push_sock(L, loop, fd);
                call_hook(L, loop, CPS_HOOK_ACCEPT, 1);
            } else if ((l = cps_queue_head(&e->readers)) != NULL) {
                struct cps_thread *th = cps_container_of(l, struct cps_thread, link);
                cps_loop_make_ready(loop, th, CPS_R_READY);
                th->wake_fd = fd;
            } else {
                cps_waitset_mark(&loop->ws, fd);
            }
        }
        if (ev & CPS_WRITE) {
            if ((l = cps_queue_head(&e->writers)) != NULL) {
                struct cps_thread *th = cps_container_of(l, struct cps_thread, link);
                cps_loop_make_ready(loop, th, CPS_R_READY);
                th->wake_fd = fd;
            } else {
                cps_waitset_mark(&loop->ws, fd);
            }
        }
    }
}


static void timers(lua_State *L, struct cps_loop *loop) {
    double now = cps_clock_now();
    while (loop->heap.len && cps_heap_top_when(&loop->heap) <= now) {
        struct cps_heap_node *n = cps_heap_top(&loop->heap);
        if (n->kind == CPS_NODE_SLEEP) {
            struct cps_thread *th = cps_container_of(n, struct cps_thread, sleep);
            cps_loop_make_ready(loop, th, th->state == CPS_T_IO ? CPS_R_TIMEOUT : CPS_R_ELAPSED);
        } else {
            fire_timeout(L, loop, cps_container_of(n, struct cps_thread, timeout));
        }
    }
}


static void run(lua_State *L, struct cps_loop *loop) {
    unsigned long limit = cps_ready_begin(&loop->ready);
    struct cps_thread *th;
    double t0 = loop->stats.on ? cps_clock_now() : 0;
    while ((th = cps_ready_pop(&loop->ready, limit)) != NULL) {
        th->state = CPS_T_RUNNING;
        run_thread(L, loop, th);
    }
    if (loop->stats.on) {
        struct cps_stats *s = &loop->stats;
        double dt = cps_clock_now() - t0;
        s->steps++;
        s->tot += dt;
        if (s->steps == 1 || dt < s->min) s->min = dt;
        if (dt > s->max) s->max = dt;
        if (s->min_ever < 0 || dt < s->min_ever) s->min_ever = dt;
        if (dt > s->max_ever) s->max_ever = dt;
    }
}


int cps_loop_step(lua_State *L, struct cps_loop *loop, double timeout) {
    int n = 0;
    struct timespec ts = { 0, 0 }, *wait = &ts;
    settle(L, loop);
    if (loop->ready.len || loop->heap.len || loop->n_io || loop->n_servers)
        wait = wait_time(loop, timeout, &ts);   /* else nothing could wake us */
    if (wait == NULL || wait->tv_sec || wait->tv_nsec || loop->n_io || loop->n_servers) {
        n = loop->ops->wait(loop->poller, loop->fired, CPS_FIRED_MAX, wait);
        if (n < 0)
            return n;
    }
    fired(L, loop, n);
    timers(L, loop);
    run(L, loop);
    return n > 0;
}


int cps_loop_finished(const struct cps_loop *loop) {
    return loop->ready.len == 0 && loop->n_sleep == 0 && loop->n_io == 0
        && loop->n_servers == 0 && loop->n_idle_timeout == 0;
}


/* ----------------------------------------------------------- removeall */

void cps_loop_remove_all(lua_State *L, struct cps_loop *loop) {
    struct cps_threads *t = &loop->threads;
    struct cps_thread **all;
    size_t i, n = 0;
    int fd, result;
    lua_newtable(L);                            /* sockets to close, as keys */
    result = lua_gettop(L);
    /* a userdata, not malloc: a Lua error below must not lose it */
    all = lua_newuserdata(L, (t->len + 1) * sizeof *all);   /* result all */
    for (i = 0; i < t->cap; i++)
        if (t->slots[i] != NULL)
            all[n++] = t->slots[i];
    for (i = 0; i < n; i++) {
        struct cps_thread *th = all[i];
        if (th->state == CPS_T_RUNNING) {       /* the caller and its resumers */
            untimeout(loop, th);
            cps_loop_untask(loop, th);
            if (th != loop->current)
                th->flags |= CPS_TF_REMOVED;
            continue;
        }
        if (th->state == CPS_T_IO) {
            push_sock(L, loop, th->fd);
            lua_pushboolean(L, 1);
            lua_rawset(L, result);
        }
        cps_loop_drop(L, loop, th);             /* pushes its autoclose socket */
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
        } else {
            lua_pushboolean(L, 1);
            lua_rawset(L, result);
        }
    }
    lua_pop(L, 1);                              /* result */
    for (fd = 0; fd < loop->ws.cap; fd++) {
        struct cps_fdent *e = loop->ws.ents[fd];
        if (e != NULL && e->server) {
            push_sock(L, loop, fd);
            lua_pushboolean(L, 1);
            lua_rawset(L, result);
            e->server = 0;
            loop->n_servers--;
            cps_waitset_mark(&loop->ws, fd);
        }
    }
}


void cps_loop_close(lua_State *L, struct cps_loop *loop) {
    struct cps_threads *t = &loop->threads;
    size_t i;
    /* drop from the back of the slot array: a deletion only shifts slots
       that follow the hole, so each slot is visited once */
    for (i = t->cap; i-- > 0;) {
        while (t->slots[i] != NULL) {
            struct cps_thread *th = t->slots[i];
            if (th->state == CPS_T_RUNNING)
                th->state = CPS_T_GONE;         /* in no queue: detach ignores it */
            cps_loop_drop(L, loop, th);
            lua_pop(L, 1);
        }
    }
    cps_threads_free(t);
    cps_heap_free(&loop->heap);
    cps_waitset_free(&loop->ws);
    if (loop->poller != NULL)
        loop->ops->destroy(loop->poller);
    loop->poller = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, loop->socks_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, loop->hooks_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, loop->idle_ref);
    loop->socks_ref = loop->hooks_ref = loop->idle_ref = LUA_NOREF;
}
