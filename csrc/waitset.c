/* waitset.c: per-descriptor waiting sets; see waitset.h. */
#include <stdlib.h>

#include "poller.h"
#include "waitset.h"


void cps_waitset_init(struct cps_waitset *ws) {
    ws->ents = NULL;
    ws->cap = 0;
    ws->changed = NULL;
    ws->nchanged = 0;
}


void cps_waitset_free(struct cps_waitset *ws) {
    int fd;
    for (fd = 0; fd < ws->cap; fd++)
        free(ws->ents[fd]);
    free(ws->ents);
    free(ws->changed);
    cps_waitset_init(ws);
}


static int grow(struct cps_waitset *ws, int fd) {
    int cap = ws->cap ? ws->cap : 64, i;
    struct cps_fdent **ents;
    int *changed;
    while (cap <= fd)
        cap *= 2;
    ents = realloc(ws->ents, (size_t)cap * sizeof *ents);
    if (ents == NULL)
        return -1;
    ws->ents = ents;
    for (i = ws->cap; i < cap; i++)
        ents[i] = NULL;
    /* one change-list slot per possible descriptor: marking never fails */
    changed = realloc(ws->changed, (size_t)cap * sizeof *changed);
    if (changed == NULL)
        return -1;
    ws->changed = changed;
    ws->cap = cap;
    return 0;
}


struct cps_fdent *cps_waitset_get(struct cps_waitset *ws, int fd) {
    struct cps_fdent *e;
    if (fd < 0)
        return NULL;
    if (fd >= ws->cap && grow(ws, fd) < 0)
        return NULL;
    if ((e = ws->ents[fd]) != NULL)
        return e;
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    cps_queue_init(&e->readers);
    cps_queue_init(&e->writers);
    ws->ents[fd] = e;
    return e;
}


unsigned cps_waitset_wanted(const struct cps_fdent *e) {
    unsigned w = 0;
    if (e->server || !cps_queue_empty(&e->readers))
        w |= CPS_READ;
    if (!cps_queue_empty(&e->writers))
        w |= CPS_WRITE;
    return w;
}


void cps_waitset_mark(struct cps_waitset *ws, int fd) {
    struct cps_fdent *e = ws->ents[fd];
    if (e->changed)
        return;
    e->changed = 1;
    ws->changed[ws->nchanged++] = fd;
}
