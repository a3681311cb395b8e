/* heap.c: binary min-heap on (when, seq); see heap.h. */
#include <errno.h>
#include <stdlib.h>

#include "heap.h"


static int less(const struct cps_heap_node *a, const struct cps_heap_node *b) {
    if (a->when != b->when)
        return a->when < b->when;
    return a->seq < b->seq;
}


static void place(struct cps_heap *h, size_t i, struct cps_heap_node *n) {
    h->nodes[i] = n;
    n->index = i;
}


static void sift_up(struct cps_heap *h, size_t i) {
    struct cps_heap_node *n = h->nodes[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!less(n, h->nodes[parent]))
            break;
        place(h, i, h->nodes[parent]);
        i = parent;
    }
    place(h, i, n);
}


static void sift_down(struct cps_heap *h, size_t i) {
    struct cps_heap_node *n = h->nodes[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len && less(h->nodes[child + 1], h->nodes[child]))
            child++;
        if (!less(h->nodes[child], n))
            break;
        place(h, i, h->nodes[child]);
        i = child;
    }
    place(h, i, n);
}


void cps_heap_init(struct cps_heap *h) {
    h->nodes = NULL;
    h->len = h->cap = 0;
    h->seq = 0;
}


void cps_heap_free(struct cps_heap *h) {
    size_t i;
    for (i = 0; i < h->len; i++)
        h->nodes[i]->index = CPS_HEAP_NONE;
    free(h->nodes);
    cps_heap_init(h);
}


int cps_heap_reserve(struct cps_heap *h, size_t extra) {
    size_t need = h->len + extra, cap;
    struct cps_heap_node **nodes;
    if (need <= h->cap)
        return 0;
    cap = h->cap ? h->cap : 64;
    while (cap < need)
        cap *= 2;
    nodes = realloc(h->nodes, cap * sizeof *nodes);
    if (nodes == NULL)
        return -ENOMEM;
    h->nodes = nodes;
    h->cap = cap;
    return 0;
}


void cps_heap_push(struct cps_heap *h, struct cps_heap_node *n, double when) {
    n->when = when;
    n->seq = h->seq++;
    place(h, h->len++, n);
    sift_up(h, n->index);
}


void cps_heap_remove(struct cps_heap *h, struct cps_heap_node *n) {
    size_t i = n->index;
    struct cps_heap_node *last;
    if (i == CPS_HEAP_NONE)
        return;
    n->index = CPS_HEAP_NONE;
    last = h->nodes[--h->len];
    if (i == h->len)
        return;
    place(h, i, last);
    if (i > 0 && less(last, h->nodes[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}
