/* taskset.c: life of a task set; the scheduling is loop.c's. */
#include <stdlib.h>

#include "taskset.h"


struct cps_taskset *cps_taskset_new(size_t max) {
    struct cps_taskset *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->max = max;
    s->handle = 1;
    cps_queue_init(&s->queued);
    cps_queue_init(&s->joiners);
    return s;
}


void cps_taskset_maybe_free(struct cps_taskset *s) {
    if (!s->handle && s->refs == 0)
        free(s);
}
