/* poller.c: choosing a backend; see poller.h. */
#include <string.h>

#include "poller.h"

static const struct cps_poller_ops *const backends[] = {
#ifdef __linux__
    &cps_poller_epoll,
#endif
    &cps_poller_poll,
    &cps_poller_select,
};


const struct cps_poller_ops *cps_poller_find(const char *name) {
    size_t i;
    if (name == NULL || *name == '\0')
        return backends[0];
    for (i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}
