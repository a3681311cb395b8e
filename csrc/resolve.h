/*
** resolve.h: host name lookups as pool jobs. getaddrinfo runs on a
** worker thread; the result is a list of numeric addresses in the order
** getaddrinfo gave them, or an error code. Plain C.
*/
#ifndef CPS_RESOLVE_H
#define CPS_RESOLVE_H

#include "pool.h"

#define CPS_HOST_MAX 255        /* longest host name accepted */

enum { CPS_FAMILY_UNSPEC, CPS_FAMILY_INET, CPS_FAMILY_INET6 };

struct cps_addr {
    int family;                 /* CPS_FAMILY_INET or CPS_FAMILY_INET6 */
    char text[46];              /* numeric form, INET6_ADDRSTRLEN */
};

struct cps_resolve {
    struct cps_job job;
    char host[CPS_HOST_MAX + 1];
    int family;                 /* wanted: CPS_FAMILY_* */
    int gai;                    /* getaddrinfo's result */
    int sys;                    /* errno when gai is EAI_SYSTEM */
    size_t naddrs;
    struct cps_addr *addrs;
};

/* a new lookup job for host (at most CPS_HOST_MAX bytes), or NULL */
struct cps_resolve *cps_resolve_new(const char *host, int family);

/* the job behind a pool job, or NULL when `job` is another kind */
struct cps_resolve *cps_resolve_of(struct cps_job *job);

/* the error of a finished lookup in LuaSocket's words, or NULL */
const char *cps_resolve_strerror(const struct cps_resolve *r);

/* the family of a literal address ("127.0.0.1", "::1"), or
   CPS_FAMILY_UNSPEC when host is a name */
int cps_resolve_literal(const char *host);

#endif
