/*
** pool.c: worker threads, the job queue and the completion channel.
** One mutex guards the queue, the completion list and each worker's
** `current` job; a condition variable wakes idle workers. A worker
** signals the channel after putting a job on the completion list, and
** the collector drains the channel before it finds the list empty, so a
** completion is never left without a readable descriptor.
*/
#include <errno.h>          /* EAGAIN, EINTR, ENOMEM */
#include <fcntl.h>          /* fcntl, O_NONBLOCK, FD_CLOEXEC */
#include <pthread.h>        /* threads, mutex, condition variable */
#include <stdint.h>         /* uint64_t */
#include <stdlib.h>         /* calloc, free */
#include <unistd.h>         /* read, write, close, pipe, sysconf */
#ifdef __linux__
#include <sys/eventfd.h>    /* eventfd */
#endif

#include "pool.h"

struct worker {
    struct cps_pool *pool;
    pthread_t tid;
    int started;
    void *ctx;
    struct cps_job *current;    /* running job, under the lock */
};

struct cps_pool {
    pthread_mutex_t lock;
    pthread_cond_t more;        /* queued jobs, or stopping */
    struct cps_job *qhead, *qtail;
    struct cps_job *dhead, *dtail;
    unsigned long next_id;
    int stopping;
    int rfd, wfd;               /* the same eventfd, or a pipe's ends */
    int nthreads;
    void (*ctx_free)(void *ctx);
    struct worker *workers;
};


static void append(struct cps_job **head, struct cps_job **tail, struct cps_job *job) {
    job->next = NULL;
    if (*tail)
        (*tail)->next = job;
    else
        *head = job;
    *tail = job;
}


static struct cps_job *pop(struct cps_job **head, struct cps_job **tail) {
    struct cps_job *job = *head;
    if (job != NULL && (*head = job->next) == NULL)
        *tail = NULL;
    return job;
}


/* unlink job `id` from a list: it, or NULL */
static struct cps_job *unlink_id(struct cps_job **head, struct cps_job **tail, unsigned long id) {
    struct cps_job *prev = NULL, *job;
    for (job = *head; job != NULL; prev = job, job = job->next) {
        if (job->id != id)
            continue;
        if (prev)
            prev->next = job->next;
        else
            *head = job->next;
        if (*tail == job)
            *tail = prev;
        return job;
    }
    return NULL;
}


static void destroy_list(struct cps_job *job) {
    while (job != NULL) {
        struct cps_job *next = job->next;
        job->destroy(job);
        job = next;
    }
}


/* ------------------------------------------------------------- channel */

static int set_flags(int fd) {
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0
        || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}


static int channel_open(struct cps_pool *p) {
    int fds[2], err;
#ifdef __linux__
    if ((p->rfd = p->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) >= 0)
        return 0;
#endif
    if (pipe(fds) < 0)
        return -errno;
    p->rfd = fds[0];
    p->wfd = fds[1];
    if ((err = set_flags(fds[0])) < 0 || (err = set_flags(fds[1])) < 0)
        return err;
    return 0;
}


/* make the descriptor readable; a full pipe is readable already */
static void channel_signal(struct cps_pool *p) {
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(p->wfd, &one, p->rfd == p->wfd ? sizeof one : 1);
    while (n < 0 && errno == EINTR);
}


static void channel_drain(struct cps_pool *p) {
    char buf[64];
    ssize_t n;
    do
        n = read(p->rfd, buf, p->rfd == p->wfd ? sizeof(uint64_t) : sizeof buf);
    while (n > 0 || (n < 0 && errno == EINTR));
}


static void channel_close(struct cps_pool *p) {
    if (p->rfd >= 0)
        close(p->rfd);
    if (p->wfd >= 0 && p->wfd != p->rfd)
        close(p->wfd);
    p->rfd = p->wfd = -1;
}


/* ------------------------------------------------------------- workers */

/* the next job for `w`, or NULL when the pool stops */
static struct cps_job *next_job(struct worker *w) {
    struct cps_pool *p = w->pool;
    struct cps_job *job;
    pthread_mutex_lock(&p->lock);
    while (!p->stopping && p->qhead == NULL)
        pthread_cond_wait(&p->more, &p->lock);
    job = p->stopping ? NULL : pop(&p->qhead, &p->qtail);
    w->current = job;
    pthread_mutex_unlock(&p->lock);
    return job;
}


/* `job` ran: publish it, or destroy it when it was cancelled meanwhile */
static void finish_job(struct worker *w, struct cps_job *job) {
    struct cps_pool *p = w->pool;
    int cancelled;
    pthread_mutex_lock(&p->lock);
    w->current = NULL;
    if (!(cancelled = job->cancelled))
        append(&p->dhead, &p->dtail, job);
    pthread_mutex_unlock(&p->lock);
    if (cancelled)
        job->destroy(job);
    else
        channel_signal(p);
}


static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct cps_job *job;
    while ((job = next_job(w)) != NULL) {
        job->run(job, &w->ctx);
        finish_job(w, job);
    }
    return NULL;
}


/* ---------------------------------------------------------------- pool */

int cps_pool_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}


static int start_workers(struct cps_pool *p) {
    int i;
    for (i = 0; i < p->nthreads; i++) {
        struct worker *w = &p->workers[i];
        int err;
        w->pool = p;
        if ((err = pthread_create(&w->tid, NULL, worker_main, w)) != 0)
            return -err;
        w->started = 1;
    }
    return 0;
}


int cps_pool_new(struct cps_pool **out, int nthreads, void (*ctx_free)(void *ctx)) {
    struct cps_pool *p = calloc(1, sizeof *p);
    int err;
    *out = NULL;
    if (p == NULL || (p->workers = calloc((size_t)nthreads, sizeof *p->workers)) == NULL) {
        free(p);
        return -ENOMEM;
    }
    p->nthreads = nthreads;
    p->ctx_free = ctx_free;
    p->rfd = p->wfd = -1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->more, NULL);
    if ((err = channel_open(p)) < 0 || (err = start_workers(p)) < 0) {
        cps_pool_free(p);
        return err;
    }
    *out = p;
    return 0;
}


unsigned long cps_pool_submit(struct cps_pool *p, struct cps_job *job) {
    unsigned long id = 0;
    pthread_mutex_lock(&p->lock);
    if (!p->stopping) {
        id = job->id = ++p->next_id;
        job->cancelled = 0;
        append(&p->qhead, &p->qtail, job);
        pthread_cond_signal(&p->more);
    }
    pthread_mutex_unlock(&p->lock);
    return id;
}


/* under the lock: flag a running job, or unlink a queued or done one */
static struct cps_job *cancel_locked(struct cps_pool *p, unsigned long id, int *found) {
    struct cps_job *job;
    int i;
    for (i = 0; i < p->nthreads; i++) {
        if (p->workers[i].current && p->workers[i].current->id == id) {
            p->workers[i].current->cancelled = 1;
            *found = 1;
            return NULL;
        }
    }
    if ((job = unlink_id(&p->qhead, &p->qtail, id)) == NULL)
        job = unlink_id(&p->dhead, &p->dtail, id);
    *found = job != NULL;
    return job;
}


int cps_pool_cancel(struct cps_pool *p, unsigned long id) {
    struct cps_job *job;
    int found;
    pthread_mutex_lock(&p->lock);
    job = cancel_locked(p, id, &found);
    pthread_mutex_unlock(&p->lock);
    if (job != NULL)
        job->destroy(job);
    return found;
}


void cps_pool_cancel_all(struct cps_pool *p) {
    struct cps_job *queued, *done;
    int i;
    pthread_mutex_lock(&p->lock);
    for (i = 0; i < p->nthreads; i++)
        if (p->workers[i].current)
            p->workers[i].current->cancelled = 1;
    queued = p->qhead;
    done = p->dhead;
    p->qhead = p->qtail = p->dhead = p->dtail = NULL;
    pthread_mutex_unlock(&p->lock);
    destroy_list(queued);
    destroy_list(done);
}


struct cps_job *cps_pool_take(struct cps_pool *p) {
    struct cps_job *job;
    pthread_mutex_lock(&p->lock);
    job = pop(&p->dhead, &p->dtail);
    if (job == NULL)
        channel_drain(p);       /* under the lock: no signal is lost */
    pthread_mutex_unlock(&p->lock);
    return job;
}


int cps_pool_fd(const struct cps_pool *p) {
    return p->rfd;
}


int cps_pool_size(const struct cps_pool *p) {
    return p->nthreads;
}


/* stop and join every started worker, then release their slots */
static void stop_workers(struct cps_pool *p) {
    int i;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->more);
    pthread_mutex_unlock(&p->lock);
    for (i = 0; i < p->nthreads; i++) {
        struct worker *w = &p->workers[i];
        if (w->started)
            pthread_join(w->tid, NULL);
        if (w->ctx != NULL && p->ctx_free != NULL)
            p->ctx_free(w->ctx);
    }
}


void cps_pool_free(struct cps_pool *p) {
    if (p == NULL)
        return;
    stop_workers(p);
    destroy_list(p->qhead);
    destroy_list(p->dhead);
    channel_close(p);
    pthread_cond_destroy(&p->more);
    pthread_mutex_destroy(&p->lock);
    free(p->workers);
    free(p);
}
