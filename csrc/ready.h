/*
** ready.h: the ready queue. FIFO in order of becoming runnable; each
** thread is stamped with the generation it joined in, so a step resumes
** only what was ready when its run phase began: a thread made runnable
** during that phase (pause(0), wakeup, a lock release) waits a round.
*/
#ifndef CPS_READY_H
#define CPS_READY_H

#include "thread.h"

struct cps_ready {
    struct cps_link q;
    struct cps_link *front;     /* last of the threads pushed to the front */
    size_t len;
    unsigned long gen;
};

void cps_ready_init(struct cps_ready *r);
void cps_ready_push(struct cps_ready *r, struct cps_thread *th);
/* ahead of every thread pushed with cps_ready_push, behind those pushed
   to the front since cps_ready_begin: accepted handlers run first, in
   the order they were accepted */
void cps_ready_push_front(struct cps_ready *r, struct cps_thread *th);

void cps_ready_remove(struct cps_ready *r, struct cps_thread *th);

/* start a run phase: returns the last generation it may resume */
unsigned long cps_ready_begin(struct cps_ready *r);

/* next thread of the run phase that began with `limit`, or NULL */
struct cps_thread *cps_ready_pop(struct cps_ready *r, unsigned long limit);

#endif
