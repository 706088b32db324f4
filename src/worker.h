/*
 * worker.h - a small pool of threads for blocking work.
 *
 * work() runs on a pool thread; done() then runs on the event loop thread,
 * in completion order.  Nothing else crosses between threads: the loop
 * owns every object, and lends it to one work() at a time.
 */
#ifndef PETREL_WORKER_H
#define PETREL_WORKER_H

#include "event.h"

struct workers;
typedef void worker_fn(void *arg);

struct workers *workers_start(struct ev_loop *loop, int nthreads);
void workers_submit(struct workers *w, worker_fn *work, worker_fn *done, void *arg);
int workers_pending(const struct workers *w);   /* submitted, done() not yet run */
void workers_stop(struct workers **w);           /* finish queued work, join */

#endif
