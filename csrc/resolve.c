/*
** resolve.c: getaddrinfo on a pool thread. The job copies out numeric
** addresses and frees the addrinfo list before it ends, so the loop's
** thread only ever sees plain arrays.
*/
#include <arpa/inet.h>      /* inet_pton */
#include <netdb.h>          /* getaddrinfo, getnameinfo, EAI_* */
#include <stdlib.h>         /* calloc, free */
#include <string.h>         /* strlen, memcpy, strerror */
#include <errno.h>          /* errno */
#include <sys/socket.h>     /* AF_INET, AF_INET6 */

#include "resolve.h"

static const struct { int code; const char *text; } gai_words[] = {
    { EAI_AGAIN, "temporary failure in name resolution" },
    { EAI_BADFLAGS, "invalid value for ai_flags" },
    { EAI_FAIL, "non-recoverable failure in name resolution" },
    { EAI_FAMILY, "ai_family not supported" },
    { EAI_MEMORY, "memory allocation failure" },
    { EAI_NONAME, "host or service not provided, or not known" },
#ifdef EAI_OVERFLOW
    { EAI_OVERFLOW, "argument buffer overflow" },
#endif
    { EAI_SERVICE, "service not supported for socket type" },
    { EAI_SOCKTYPE, "ai_socktype not supported" },
};


static int count(const struct addrinfo *ai) {
    int n = 0;
    for (; ai != NULL; ai = ai->ai_next)
        n += ai->ai_family == AF_INET || ai->ai_family == AF_INET6;
    return n;
}


/* copy the numeric addresses of `list` into r->addrs */
static void collect(struct cps_resolve *r, const struct addrinfo *list) {
    const struct addrinfo *ai;
    if ((r->addrs = calloc((size_t)count(list) + 1, sizeof *r->addrs)) == NULL) {
        r->gai = EAI_MEMORY;
        return;
    }
    for (ai = list; ai != NULL; ai = ai->ai_next) {
        struct cps_addr *a = &r->addrs[r->naddrs];
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, a->text, sizeof a->text,
                        NULL, 0, NI_NUMERICHOST) != 0)
            continue;
        a->family = ai->ai_family == AF_INET ? CPS_FAMILY_INET : CPS_FAMILY_INET6;
        r->naddrs++;
    }
}


static void run(struct cps_job *job, void **ctx) {
    struct cps_resolve *r = (struct cps_resolve *)job;
    struct addrinfo hints, *list = NULL;
    (void)ctx;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = r->family == CPS_FAMILY_INET ? AF_INET
                    : r->family == CPS_FAMILY_INET6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r->gai = getaddrinfo(r->host, NULL, &hints, &list);
    r->sys = r->gai == EAI_SYSTEM ? errno : 0;
    if (r->gai == 0)
        collect(r, list);
    if (list != NULL)
        freeaddrinfo(list);
}


static void destroy(struct cps_job *job) {
    struct cps_resolve *r = (struct cps_resolve *)job;
    free(r->addrs);
    free(r);
}


struct cps_resolve *cps_resolve_new(const char *host, int family) {
    size_t len = strlen(host);
    struct cps_resolve *r;
    if (len > CPS_HOST_MAX || (r = calloc(1, sizeof *r)) == NULL)
        return NULL;
    memcpy(r->host, host, len + 1);
    r->family = family;
    r->job.run = run;
    r->job.destroy = destroy;
    return r;
}


struct cps_resolve *cps_resolve_of(struct cps_job *job) {
    return job->run == run ? (struct cps_resolve *)job : NULL;
}


const char *cps_resolve_strerror(const struct cps_resolve *r) {
    size_t i;
    if (r->gai == 0)
        return NULL;
    if (r->gai == EAI_SYSTEM)
        return strerror(r->sys);
    for (i = 0; i < sizeof gai_words / sizeof gai_words[0]; i++)
        if (gai_words[i].code == r->gai)
            return gai_words[i].text;
    return gai_strerror(r->gai);
}


int cps_resolve_literal(const char *host) {
    unsigned char buf[16];
    if (inet_pton(AF_INET, host, buf) == 1)
        return CPS_FAMILY_INET;
    if (inet_pton(AF_INET6, host, buf) == 1)
        return CPS_FAMILY_INET6;
    return CPS_FAMILY_UNSPEC;
}
