/*
 * event.c - epoll event loop with a binary heap of timers (see event.h).
 */
#include "event.h"
#include "mem.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

struct ev_watch {
	int mask;
	ev_fd_cb *cb;
	void *arg;
};

struct ev_loop {
	int epfd;
	bool stop;
	struct ev_watch *fds;       /* indexed by fd */
	int nfds;
	struct ev_timer **heap;
	int nheap, capheap;
	void (*before)(struct ev_loop *, void *);
	void *before_arg;
};

uint64_t ev_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct ev_loop *ev_loop_new(void)
{
	struct ev_loop *l = xcalloc(1, sizeof *l);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0)
		log_fatal("epoll_create1: %m");
	return l;
}

void ev_loop_free(struct ev_loop **lp)
{
	struct ev_loop *l = *lp;
	if (!l)
		return;
	close(l->epfd);
	free(l->fds);
	free(l->heap);
	free(l);
	*lp = NULL;
}

int ev_fd_set(struct ev_loop *l, int fd, int mask, ev_fd_cb *cb, void *arg,
              const char **err)
{
	if (fd >= l->nfds) {
		int n = l->nfds ? l->nfds : 64;
		while (n <= fd)
			n *= 2;
		l->fds = xrealloc(l->fds, (size_t)n * sizeof *l->fds);
		memset(l->fds + l->nfds, 0, (size_t)(n - l->nfds) * sizeof *l->fds);
		l->nfds = n;
	}
	struct ev_watch *w = &l->fds[fd];
	if (mask == 0) {
		ev_fd_del(l, fd);
		return 0;
	}
	struct epoll_event ee = { .data.fd = fd };
	if (mask & EV_READ)
		ee.events |= EPOLLIN;
	if (mask & EV_WRITE)
		ee.events |= EPOLLOUT;
	int op = w->mask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (w->mask != mask && epoll_ctl(l->epfd, op, fd, &ee) < 0) {
		*err = strerror(errno);
		return -1;
	}
	w->mask = mask;
	w->cb = cb;
	w->arg = arg;
	return 0;
}

void ev_fd_del(struct ev_loop *l, int fd)
{
	if (fd < 0 || fd >= l->nfds || !l->fds[fd].mask)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	l->fds[fd] = (struct ev_watch){0};
}

/* --- timers: a binary min-heap on 'when' --- */

static void heap_swap(struct ev_loop *l, int a, int b)
{
	struct ev_timer *t = l->heap[a];
	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_index = a;
	l->heap[b]->heap_index = b;
}

static void heap_up(struct ev_loop *l, int i)
{
	while (i > 0) {
		int p = (i - 1) / 2;
		if (l->heap[p]->when <= l->heap[i]->when)
			break;
		heap_swap(l, i, p);
		i = p;
	}
}

static void heap_down(struct ev_loop *l, int i)
{
	for (;;) {
		int c = 2 * i + 1, m = i;
		if (c < l->nheap && l->heap[c]->when < l->heap[m]->when)
			m = c;
		if (c + 1 < l->nheap && l->heap[c + 1]->when < l->heap[m]->when)
			m = c + 1;
		if (m == i)
			return;
		heap_swap(l, i, m);
		i = m;
	}
}

void ev_timer_init(struct ev_timer *t, ev_timer_cb *cb, void *arg)
{
	*t = (struct ev_timer){ .cb = cb, .arg = arg, .heap_index = -1 };
}

void ev_timer_start(struct ev_loop *l, struct ev_timer *t, uint64_t after_ms)
{
	ev_timer_stop(l, t);
	if (l->nheap == l->capheap) {
		l->capheap = l->capheap ? l->capheap * 2 : 64;
		l->heap = xrealloc(l->heap, (size_t)l->capheap * sizeof *l->heap);
	}
	t->when = ev_now_ms() + after_ms;
	t->heap_index = l->nheap;
	l->heap[l->nheap++] = t;
	heap_up(l, t->heap_index);
}

void ev_timer_stop(struct ev_loop *l, struct ev_timer *t)
{
	int i = t->heap_index;
	if (i < 0)
		return;
	t->heap_index = -1;
	l->nheap--;
	if (i == l->nheap)
		return;
	l->heap[i] = l->heap[l->nheap];
	l->heap[i]->heap_index = i;
	heap_up(l, i);
	heap_down(l, l->heap[i]->heap_index);
}

void ev_before_sleep(struct ev_loop *l, void (*fn)(struct ev_loop *, void *), void *arg)
{
	l->before = fn;
	l->before_arg = arg;
}

void ev_stop(struct ev_loop *l)
{
	l->stop = true;
}

static void run_timers(struct ev_loop *l)
{
	uint64_t now = ev_now_ms();
	while (l->nheap && l->heap[0]->when <= now) {
		struct ev_timer *t = l->heap[0];
		ev_timer_stop(l, t);
		t->cb(l, t->arg);
	}
}

void ev_run(struct ev_loop *l)
{
	struct epoll_event evs[256];
	l->stop = false;
	while (!l->stop) {
		if (l->before)
			l->before(l, l->before_arg);
		int timeout = -1;
		if (l->nheap) {
			uint64_t now = ev_now_ms(), when = l->heap[0]->when;
			timeout = when <= now ? 0 : (int)(when - now > 60000 ? 60000 : when - now);
		}
		int n = epoll_wait(l->epfd, evs, 256, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_fatal("epoll_wait: %m");
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd >= l->nfds)
				continue;
			struct ev_watch *w = &l->fds[fd];
			int mask = 0;
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				mask |= EV_READ;
			if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
				mask |= EV_WRITE;
			mask &= w->mask;
			if (mask && w->cb)
				w->cb(l, fd, mask, w->arg);
		}
		run_timers(l);
	}
}
