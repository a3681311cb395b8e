/*
** pool.h: a fixed set of OS threads running jobs from one queue. Finished
** jobs go to a completion list, and each completion makes the pool's
** descriptor readable (an eventfd on Linux, a pipe elsewhere), so the
** poller wakes exactly when there are results to collect. Plain C: a job
** is a header embedded in whatever its kind needs.
*/
#ifndef CPS_POOL_H
#define CPS_POOL_H

#include <stddef.h>

struct cps_job {
    struct cps_job *next;
    unsigned long id;           /* given by cps_pool_submit */
    int cancelled;              /* under the pool's lock */
    /* on a worker thread; ctx is that worker's slot, NULL at first */
    void (*run)(struct cps_job *job, void **ctx);
    void (*destroy)(struct cps_job *job);      /* frees the job */
};

struct cps_pool;

/* nthreads OS threads; ctx_free releases a worker's slot after it ends:
   0 or -errno */
int cps_pool_new(struct cps_pool **out, int nthreads, void (*ctx_free)(void *ctx));

/* queue a job (the pool owns it from now on); its id, or 0 when the
   pool is shutting down (the job is not taken) */
unsigned long cps_pool_submit(struct cps_pool *p, struct cps_job *job);

/* forget job `id`: queued or done, it is destroyed; running, its result
   is destroyed when it ends. 1 when found, 0 when not */
int cps_pool_cancel(struct cps_pool *p, unsigned long id);

/* forget every job: cps_pool_cancel for all of them */
void cps_pool_cancel_all(struct cps_pool *p);

/* the next finished job (the caller destroys it), or NULL; when none is
   left the descriptor is drained, so it turns readable only for news */
struct cps_job *cps_pool_take(struct cps_pool *p);

/* the descriptor that is readable while finished jobs wait */
int cps_pool_fd(const struct cps_pool *p);

/* number of threads */
int cps_pool_size(const struct cps_pool *p);

/* stop: queued and finished jobs are destroyed, running ones end, the
   threads are joined, then each worker slot goes to ctx_free */
void cps_pool_free(struct cps_pool *p);

/* processors online (at least 1) */
int cps_pool_cpus(void);

#endif
