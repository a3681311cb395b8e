/*
** queue.h: an intrusive, circular, doubly linked FIFO with a sentinel.
** Every queue the core keeps (ready threads, readers and writers of a
** descriptor, queued and joining tasks of a set) is one of these: O(1)
** push, pop and removal from the middle, no allocation.
*/
#ifndef CPS_QUEUE_H
#define CPS_QUEUE_H

#include <stddef.h>

struct cps_link {
    struct cps_link *next, *prev;
};

#define cps_container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline void cps_queue_init(struct cps_link *q) {
    q->next = q->prev = q;
}

static inline int cps_queue_empty(const struct cps_link *q) {
    return q->next == q;
}

/* a link that is in no queue points at itself */
static inline int cps_link_linked(const struct cps_link *l) {
    return l->next != l;
}

static inline void cps_queue_push(struct cps_link *q, struct cps_link *l) {
    l->prev = q->prev;
    l->next = q;
    q->prev->next = l;
    q->prev = l;
}

static inline void cps_link_remove(struct cps_link *l) {
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->next = l->prev = l;
}

static inline struct cps_link *cps_queue_head(const struct cps_link *q) {
    return cps_queue_empty(q) ? NULL : q->next;
}

#endif
