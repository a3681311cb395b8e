/* ready.c: the ready queue; see ready.h. */
#include "ready.h"


void cps_ready_init(struct cps_ready *r) {
    cps_queue_init(&r->q);
    r->front = &r->q;
    r->len = 0;
    r->gen = 0;
}


void cps_ready_push(struct cps_ready *r, struct cps_thread *th) {
    th->gen = r->gen;
    cps_queue_push(&r->q, &th->link);
    r->len++;
}


void cps_ready_push_front(struct cps_ready *r, struct cps_thread *th) {
    struct cps_link *after = r->front, *l = &th->link;
    th->gen = r->gen;
    l->prev = after;
    l->next = after->next;
    after->next->prev = l;
    after->next = l;
    r->front = l;
    r->len++;
}


void cps_ready_remove(struct cps_ready *r, struct cps_thread *th) {
    if (r->front == &th->link)
        r->front = th->link.prev;
    cps_link_remove(&th->link);
    r->len--;
}


unsigned long cps_ready_begin(struct cps_ready *r) {
    r->front = &r->q;
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
