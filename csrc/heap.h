/*
** heap.h: a 4-ary min-heap of deadlines. Nodes are embedded in their
** owners (container_of style) and remember their slot, so removal is
** O(log n) without a search. Ties on the deadline are broken by insertion
** order: timers due together fire in the order they were armed.
**
** The array holds each node's deadline next to its pointer, so sifting
** compares without touching the owners (scattered in memory: with 100 000
** sleepers a pointer-only binary heap spent most of a wake-up in cache
** misses). The four children of a slot share one 64-byte cache line.
*/
#ifndef CPS_HEAP_H
#define CPS_HEAP_H

#include <stddef.h>
#include <stdint.h>

#define CPS_HEAP_NONE ((size_t)-1)
#define CPS_HEAP_ARITY 4

struct cps_heap_node {
    double when;        /* deadline, seconds on the monotonic clock */
    uint64_t seq;       /* insertion order, for ties */
    size_t index;       /* slot in the heap, CPS_HEAP_NONE when out */
    int kind;           /* the owner's tag: which member of it this is */
};

struct cps_heap_slot {
    double when;                    /* copy of node->when */
    struct cps_heap_node *node;
};

struct cps_heap {
    struct cps_heap_slot *slots;    /* slots[1..4] start a cache line */
    void *mem;                      /* the allocation slots points into */
    size_t len, cap;
    uint64_t seq;
};

void cps_heap_init(struct cps_heap *h);
void cps_heap_free(struct cps_heap *h);

/* room for `extra` more nodes: 0, or -ENOMEM with the heap unchanged */
int cps_heap_reserve(struct cps_heap *h, size_t extra);

/* insert; the caller reserved room before. Cannot fail. */
void cps_heap_push(struct cps_heap *h, struct cps_heap_node *n, double when);

/* remove a node that is in the heap (no-op when it is not) */
void cps_heap_remove(struct cps_heap *h, struct cps_heap_node *n);

/* the node in slot i (i < len), and the slot of i's parent (i > 0) */
static inline struct cps_heap_node *cps_heap_at(const struct cps_heap *h, size_t i) {
    return h->slots[i].node;
}

static inline size_t cps_heap_parent(size_t i) {
    return (i - 1) / CPS_HEAP_ARITY;
}

/* earliest node, or NULL */
static inline struct cps_heap_node *cps_heap_top(const struct cps_heap *h) {
    return h->len ? h->slots[0].node : NULL;
}

/* the earliest deadline; only when the heap is not empty */
static inline double cps_heap_top_when(const struct cps_heap *h) {
    return h->slots[0].when;
}

static inline int cps_heap_contains(const struct cps_heap_node *n) {
    return n->index != CPS_HEAP_NONE;
}

#endif
