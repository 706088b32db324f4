/*
 * event.h - the event loop: fd readiness, timers, a before-sleep hook.
 *
 * One loop runs every session and every outbound connection (epoll).
 * Callbacks must not block.  Threads never touch the loop: they hand
 * results back through an eventfd that the loop watches like any fd.
 *
 * Timers are one-shot; struct ev_timer is embedded in its owner (no
 * allocation) and must be stopped before its owner is freed.
 */
#ifndef PETREL_EVENT_H
#define PETREL_EVENT_H

#include <stdint.h>
#include <stdbool.h>

#define EV_READ  1
#define EV_WRITE 2

struct ev_loop;
typedef void ev_fd_cb(struct ev_loop *loop, int fd, int mask, void *arg);
typedef void ev_timer_cb(struct ev_loop *loop, void *arg);

struct ev_timer {
	uint64_t when;      /* monotonic ms */
	ev_timer_cb *cb;
	void *arg;
	int heap_index;     /* -1 when not armed */
};

struct ev_loop *ev_loop_new(void);
void ev_loop_free(struct ev_loop **loop);

/* Watch fd for mask (EV_READ|EV_WRITE); mask 0 removes the watch.
 * Returns 0, or -1 with *err set. */
int ev_fd_set(struct ev_loop *loop, int fd, int mask, ev_fd_cb *cb, void *arg,
              const char **err) __attribute__((warn_unused_result));
void ev_fd_del(struct ev_loop *loop, int fd);

void ev_timer_init(struct ev_timer *t, ev_timer_cb *cb, void *arg);
void ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t after_ms);
void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t);
static inline bool ev_timer_armed(const struct ev_timer *t) { return t->heap_index >= 0; }

/* Called before each wait; used for batching (group commit). */
void ev_before_sleep(struct ev_loop *loop, void (*fn)(struct ev_loop *, void *), void *arg);

uint64_t ev_now_ms(void);
void ev_run(struct ev_loop *loop);   /* until ev_stop() */
void ev_stop(struct ev_loop *loop);

#endif
