/* ready.c: the ready queue; see ready.h. */
#include "ready.h"


void cps_ready_init(struct cps_ready *r) {
    cps_queue_init(&r->q);
    r->len = 0;
    r->gen = 0;
}


void cps_ready_push(struct cps_ready *r, struct cps_thread *th) {
    th->gen = r->gen;
    cps_queue_push(&r->q, &th->link);
    r->len++;
}


void cps_ready_remove(struct cps_ready *r, struct cps_thread *th) {
    cps_link_remove(&th->link);
    r->len--;
}


unsigned long cps_ready_begin(struct cps_ready *r) {
    return r->gen++;
}


struct cps_thread *cps_ready_pop(struct cps_ready *r, unsigned long limit) {
    struct cps_link *head = cps_queue_head(&r->q);
    struct cps_thread *th;
    if (head == NULL)
        return NULL;
    th = cps_container_of(head, struct cps_thread, link);
    if (th->gen > limit)
        return NULL;
    cps_ready_remove(r, th);
    return th;
}
