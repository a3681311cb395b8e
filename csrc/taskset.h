/*
** taskset.h: copas.limit's task sets. At most `max` of a set's threads
** are counted as running; the rest wait in FIFO order (CPS_T_QUEUED) and
** start as slots free up. Threads joining the set (set:wait()) wait for
** it to have no running and no queued task. The set is freed when its
** Lua handle is collected and no thread refers to it any more.
*/
#ifndef CPS_TASKSET_H
#define CPS_TASKSET_H

#include <stddef.h>

#include "queue.h"

struct cps_taskset {
    size_t max;             /* slots */
    size_t running;         /* threads counted in a slot */
    size_t nqueued;         /* threads waiting for a slot */
    struct cps_link queued; /* CPS_T_QUEUED threads */
    struct cps_link joiners;/* CPS_T_JOIN threads */
    int handle;             /* the Lua handle is alive */
    size_t refs;            /* threads pointing here (counted, queued, joining) */
};

struct cps_taskset *cps_taskset_new(size_t max);

/* free it if neither the handle nor any thread refers to it */
void cps_taskset_maybe_free(struct cps_taskset *s);

static inline int cps_taskset_idle(const struct cps_taskset *s) {
    return s->running == 0 && s->nqueued == 0;
}

#endif
