/*
** thread.c: the coroutine -> thread table. Linear probing with
** backward-shift deletion, so there are no tombstones and a lookup
** never walks more than the cluster it hashes into.
*/
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "thread.h"


static size_t slot_of(const struct cps_threads *t, const void *co) {
    uintptr_t x = (uintptr_t)co;
    x ^= x >> 17;
    x *= (uintptr_t)0x9E3779B97F4A7C15ULL;
    x ^= x >> 29;
    return (size_t)x & (t->cap - 1);
}


void cps_threads_init(struct cps_threads *t) {
    t->slots = NULL;
    t->cap = t->len = 0;
}


void cps_threads_free(struct cps_threads *t) {
    free(t->slots);
    cps_threads_init(t);
}


static void insert(struct cps_threads *t, struct cps_thread *th) {
    size_t i = slot_of(t, th->co);
    while (t->slots[i] != NULL)
        i = (i + 1) & (t->cap - 1);
    t->slots[i] = th;
    t->len++;
}


int cps_threads_reserve(struct cps_threads *t) {
    struct cps_threads grown;
    size_t i;
    if ((t->len + 1) * 2 <= t->cap)
        return 0;
    grown.cap = t->cap ? t->cap * 2 : 256;
    grown.len = 0;
    grown.slots = calloc(grown.cap, sizeof *grown.slots);
    if (grown.slots == NULL)
        return -ENOMEM;
    for (i = 0; i < t->cap; i++)
        if (t->slots[i] != NULL)
            insert(&grown, t->slots[i]);
    free(t->slots);
    *t = grown;
    return 0;
}


void cps_threads_put(struct cps_threads *t, struct cps_thread *th) {
    insert(t, th);
}


struct cps_thread *cps_threads_get(const struct cps_threads *t, const void *co) {
    size_t i;
    if (t->cap == 0)
        return NULL;
    for (i = slot_of(t, co); t->slots[i] != NULL; i = (i + 1) & (t->cap - 1))
        if (t->slots[i]->co == co)
            return t->slots[i];
    return NULL;
}


void cps_threads_del(struct cps_threads *t, const void *co) {
    size_t i, j;
    if (t->cap == 0)
        return;
    for (i = slot_of(t, co); t->slots[i] != NULL; i = (i + 1) & (t->cap - 1))
        if (t->slots[i]->co == co)
            break;
    if (t->slots[i] == NULL)
        return;
    t->slots[i] = NULL;
    t->len--;
    /* shift later members of the cluster back over the hole */
    for (j = (i + 1) & (t->cap - 1); t->slots[j] != NULL; j = (j + 1) & (t->cap - 1)) {
        size_t home = slot_of(t, t->slots[j]->co);
        if (((j - home) & (t->cap - 1)) >= ((j - i) & (t->cap - 1))) {
            t->slots[i] = t->slots[j];
            t->slots[j] = NULL;
            i = j;
        }
    }
}
