/* heap.c: 4-ary min-heap on (when, seq); see heap.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"

#define LINE 64


/* the deadline decides; only a tie reads the nodes for their order */
static int less(const struct cps_heap_slot *a, const struct cps_heap_slot *b) {
    if (a->when != b->when)
        return a->when < b->when;
    return a->node->seq < b->node->seq;
}


static void place(struct cps_heap *h, size_t i, struct cps_heap_slot s) {
    h->slots[i] = s;
    s.node->index = i;
}


static void sift_up(struct cps_heap *h, size_t i, struct cps_heap_slot s) {
    while (i > 0) {
        size_t parent = cps_heap_parent(i);
        if (!less(&s, &h->slots[parent]))
            break;
        place(h, i, h->slots[parent]);
        i = parent;
    }
    place(h, i, s);
}


static void sift_down(struct cps_heap *h, size_t i, struct cps_heap_slot s) {
    for (;;) {
        size_t first = i * CPS_HEAP_ARITY + 1, end, best, c;
        if (first >= h->len)
            break;
        end = first + CPS_HEAP_ARITY < h->len ? first + CPS_HEAP_ARITY : h->len;
        best = first;
        for (c = first + 1; c < end; c++)
            if (less(&h->slots[c], &h->slots[best]))
                best = c;
        if (!less(&h->slots[best], &s))
            break;
        place(h, i, h->slots[best]);
        i = best;
    }
    place(h, i, s);
}


void cps_heap_init(struct cps_heap *h) {
    h->slots = NULL;
    h->mem = NULL;
    h->len = h->cap = 0;
    h->seq = 0;
}


void cps_heap_free(struct cps_heap *h) {
    size_t i;
    for (i = 0; i < h->len; i++)
        h->slots[i].node->index = CPS_HEAP_NONE;
    free(h->mem);
    cps_heap_init(h);
}


/* Grows by doubling into a fresh line-aligned block (realloc would not
   keep the alignment). Slot 0 sits just before a line boundary, so every
   group of four children, slots 4k+1 .. 4k+4, fills one line. */
int cps_heap_reserve(struct cps_heap *h, size_t extra) {
    size_t need = h->len + extra, cap;
    const size_t lead = LINE - sizeof(struct cps_heap_slot);
    void *mem;
    if (need <= h->cap)
        return 0;
    cap = h->cap ? h->cap : 64;
    while (cap < need)
        cap *= 2;
    if (posix_memalign(&mem, LINE, lead + cap * sizeof(struct cps_heap_slot)) != 0)
        return -ENOMEM;
    if (h->len)
        memcpy((char *)mem + lead, h->slots, h->len * sizeof(struct cps_heap_slot));
    free(h->mem);
    h->mem = mem;
    h->slots = (struct cps_heap_slot *)((char *)mem + lead);
    h->cap = cap;
    return 0;
}


void cps_heap_push(struct cps_heap *h, struct cps_heap_node *n, double when) {
    struct cps_heap_slot s;
    n->when = when;
    n->seq = h->seq++;
    s.when = when;
    s.node = n;
    sift_up(h, h->len++, s);
}


void cps_heap_remove(struct cps_heap *h, struct cps_heap_node *n) {
    size_t i = n->index;
    struct cps_heap_slot last;
    if (i == CPS_HEAP_NONE)
        return;
    n->index = CPS_HEAP_NONE;
    last = h->slots[--h->len];
    if (i == h->len)
        return;
    if (i > 0 && less(&last, &h->slots[cps_heap_parent(i)]))
        sift_up(h, i, last);
    else
        sift_down(h, i, last);
}
