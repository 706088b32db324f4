/*
 * worker.c - thread pool whose completions return to the loop (worker.h).
 *
 * Jobs go in a mutex-protected FIFO; finished jobs go in a second list and
 * an eventfd wakes the loop, which runs their done() callbacks.
 */
#include "worker.h"
#include "log.h"
#include "mem.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct job {
	worker_fn *work, *done;
	void *arg;
	struct job *next;
};

struct workers {
	struct ev_loop *loop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *head, *tail;        /* to do */
	struct job *finished;           /* done, newest first */
	int efd;
	int nthreads;
	pthread_t *threads;
	int pending;
	int quit;
};

static void *worker_main(void *arg)
{
	struct workers *w = arg;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->head && !w->quit)
			pthread_cond_wait(&w->cond, &w->lock);
		if (!w->head)
			break;
		struct job *j = w->head;
		w->head = j->next;
		if (!w->head)
			w->tail = NULL;
		pthread_mutex_unlock(&w->lock);
		j->work(j->arg);
		pthread_mutex_lock(&w->lock);
		j->next = w->finished;
		w->finished = j;
		uint64_t one = 1;
		if (write(w->efd, &one, sizeof one) < 0) {
			/* counter saturation cannot happen; the loop drains it */
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void on_done(struct ev_loop *loop, int fd, int mask, void *arg)
{
	(void)loop;
	(void)mask;
	struct workers *w = arg;
	uint64_t v;
	if (read(fd, &v, sizeof v) < 0) {
		/* EAGAIN: another wakeup drained it */
	}
	pthread_mutex_lock(&w->lock);
	struct job *list = w->finished;
	w->finished = NULL;
	pthread_mutex_unlock(&w->lock);
	/* reverse to completion order */
	struct job *rev = NULL;
	while (list) {
		struct job *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		struct job *n = rev->next;
		w->pending--;
		if (rev->done)
			rev->done(rev->arg);
		free(rev);
		rev = n;
	}
}

struct workers *workers_start(struct ev_loop *loop, int nthreads)
{
	struct workers *w = xcalloc(1, sizeof *w);
	const char *err;
	w->loop = loop;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0)
		log_fatal("eventfd: %m");
	if (ev_fd_set(loop, w->efd, EV_READ, on_done, w, &err) < 0)
		log_fatal("worker eventfd: %s", err);
	w->nthreads = nthreads;
	w->threads = xcalloc((size_t)nthreads, sizeof *w->threads);
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0)
			log_fatal("pthread_create failed");
	return w;
}

void workers_submit(struct workers *w, worker_fn *work, worker_fn *done, void *arg)
{
	struct job *j = xcalloc(1, sizeof *j);
	j->work = work;
	j->done = done;
	j->arg = arg;
	w->pending++;
	pthread_mutex_lock(&w->lock);
	if (w->tail)
		w->tail->next = j;
	else
		w->head = j;
	w->tail = j;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

int workers_pending(const struct workers *w)
{
	return w->pending;
}

void workers_stop(struct workers **wp)
{
	struct workers *w = *wp;
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->quit = 1;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	for (int i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	on_done(w->loop, w->efd, EV_READ, w);
	ev_fd_del(w->loop, w->efd);
	close(w->efd);
	free(w->threads);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
	*wp = NULL;
}
