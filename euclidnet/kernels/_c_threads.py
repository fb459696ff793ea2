"""C source shared by the compiled kernels: a job per thread and a pthread runner.

``PTHREADS`` defines ``ek_job_t`` (``fn``, ``arg``, ``tid``, ``nthreads``, ``err``) and
``ek_run_pthreads(fn, arg, nthreads)``: ``fn`` runs once per thread with ``job->tid = 0 .. nthreads - 1``
(thread 0 is the caller; a thread that cannot be started runs its share in the caller), and the result is
the OR of the jobs' ``err``. Each kernel source pastes it after its ``#include``s (every kernel library is
compiled on its own).
"""

from __future__ import annotations

__all__ = ["PTHREADS"]

PTHREADS = r"""
#include <pthread.h>

typedef struct {
    void *(*fn)(void *);
    void *arg;
    int tid;
    int nthreads;
    int err;
} ek_job_t;

static void *ek_trampoline(void *p) {
    ek_job_t *j = (ek_job_t *)p;
    j->fn(p);
    return NULL;
}

/* Run fn on nthreads (1..64) threads; job[t].tid = t (thread 0 is the caller). Returns the OR of job errors. */
static int ek_run_pthreads(void *(*fn)(void *), void *arg, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    ek_job_t jobs[64];
    pthread_t tid[64];
    int started[64];
    for (int t = 0; t < nthreads; t++) {
        jobs[t].fn = fn; jobs[t].arg = arg; jobs[t].tid = t; jobs[t].nthreads = nthreads; jobs[t].err = 0;
        started[t] = 0;
    }
    for (int t = 1; t < nthreads; t++)
        started[t] = pthread_create(&tid[t], NULL, ek_trampoline, &jobs[t]) == 0;
    fn(&jobs[0]);
    int err = jobs[0].err;
    for (int t = 1; t < nthreads; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else fn(&jobs[t]);  /* could not start: run its share here */
        err |= jobs[t].err;
    }
    return err;
}
"""
