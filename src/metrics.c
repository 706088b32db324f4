/*
 * metrics.c - the metrics endpoint on the event loop (see metrics.h).
 *
 * A scrape: accept (the ninth at once is closed there), read the request
 * head into a fixed METRICS_HTTP_MAX buffer and parse it again as bytes
 * arrive (metrics_http_parse keeps no state), answer -- the exposition
 * text for GET /metrics, a short text for 400/404/405/431 -- as the
 * socket takes it, then shut the write side and read what the client
 * still sends (at most LINGER_MAX bytes, within the deadline) before
 * closing, so that a client whose head was cut off at 431 reads its
 * answer instead of a reset.  Every step is under one timer: the whole
 * exchange has METRICS_DEADLINE_MS from accept.
 *
 * Logs: a warning when accept fails for want of a resource (the listener
 * then pauses); nothing per scrape.
 */
#include "metrics.h"
#include "log.h"
#include "metrics_http.h"
#include "queue.h"
#include "stats.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define LINGER_MAX (64 * 1024)
#define ACCEPT_PAUSE_MS 250

enum mc_state { MC_READ, MC_WRITE, MC_LINGER };

struct mclient {
	struct metrics *m;
	int fd;
	enum mc_state state;
	char in[METRICS_HTTP_MAX];
	size_t inlen;
	struct buf out;
	size_t off;               /* bytes of out already written */
	size_t lingered;          /* bytes read and dropped after the answer */
	struct ev_timer deadline;
	struct mclient *prev, *next;
};

struct metrics {
	struct server *srv;
	int fd;                   /* the listening socket, -1: off */
	struct ev_timer pause;    /* accept failed for a resource: wait */
	struct ev_timer spool_timer;
	struct mclient *clients;
	int nclients;
	char *hold_dir;
};

/* --- the spool gauges, on a timer --- */

static int64_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int64_t n = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void spool_tick(struct ev_loop *loop, void *arg)
{
	struct metrics *m = arg;
	struct statvfs sv;
	if (statvfs(m->srv->cfg->spool, &sv) == 0)
		stats_spool_free_set((uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize);
	stats_queue_set(STATS_QUEUE_HOLD, count_entries(m->hold_dir));
	ev_timer_start(loop, &m->spool_timer, METRICS_SPOOL_MS);
}

/* --- one scrape --- */

static void client_free(struct mclient *c)
{
	struct metrics *m = c->m;
	struct ev_loop *loop = m->srv->loop;
	ev_timer_stop(loop, &c->deadline);
	ev_fd_del(loop, c->fd);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		m->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	m->nclients--;
	buf_free(&c->out);
	free(c);
}

static void on_deadline(struct ev_loop *loop, void *arg)
{
	(void)loop;
	client_free(arg);
}

static void client_watch(struct mclient *c, int mask);

/* The answer is out: no more writes, and read until the client closes. */
static void client_linger(struct mclient *c)
{
	c->state = MC_LINGER;
	buf_free(&c->out);
	if (shutdown(c->fd, SHUT_WR) < 0) {
		client_free(c);
		return;
	}
	client_watch(c, EV_READ);
}

static void client_write(struct mclient *c)
{
	while (c->off < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->off, c->out.len - c->off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			client_watch(c, EV_WRITE);
			return;
		}
		if (n <= 0) {
			client_free(c);
			return;
		}
		c->off += (size_t)n;
	}
	client_linger(c);
}

/* The queue gauges, counted now (the queue lives on this thread). */
static void queue_now(struct server *srv)
{
	int64_t active = 0, deferred = 0;
	time_t oldest = 0;
	if (srv->queue)
		queue_gauges(srv->queue, &active, &deferred, &oldest);
	stats_queue_set(STATS_QUEUE_ACTIVE, active);
	stats_queue_set(STATS_QUEUE_DEFERRED, deferred);
	stats_oldest_queued_set((int64_t)oldest);
}

static void client_answer(struct mclient *c, enum metrics_http_result r,
                          const struct metrics_http_request *req)
{
	struct buf body = {0};
	const char *type;
	if (r == METRICS_HTTP_OK) {
		queue_now(c->m->srv);
		stats_render(&body, req->openmetrics, (int64_t)time(NULL));
		type = req->openmetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
		                        : "text/plain; version=0.0.4; charset=utf-8";
	} else {
		buf_addf(&body, "%s\n", metrics_http_status(r));
		type = "text/plain; charset=utf-8";
	}
	buf_addf(&c->out, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	         "Connection: close\r\n", metrics_http_status(r), type, body.len);
	if (r == METRICS_HTTP_BAD_METHOD)
		buf_adds(&c->out, "Allow: GET\r\n");
	buf_adds(&c->out, "\r\n");
	buf_add(&c->out, body.data ? body.data : "", body.len);
	buf_free(&body);
	c->state = MC_WRITE;
	c->off = 0;
	client_write(c);
}

static void client_read(struct mclient *c)
{
	for (;;) {
		char drop[4096];
		char *dst = c->state == MC_READ ? c->in + c->inlen : drop;
		size_t room = c->state == MC_READ ? sizeof c->in - c->inlen : sizeof drop;
		ssize_t n = recv(c->fd, dst, room, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {          /* closed, or an error: nothing more to say */
			client_free(c);
			return;
		}
		if (c->state == MC_LINGER) {
			c->lingered += (size_t)n;
			if (c->lingered > LINGER_MAX) {
				client_free(c);
				return;
			}
			continue;
		}
		c->inlen += (size_t)n;
		struct metrics_http_request req;
		enum metrics_http_result r = metrics_http_parse(c->in, c->inlen, &req);
		if (r != METRICS_HTTP_INCOMPLETE) {
			client_answer(c, r, &req);
			return;
		}
		if (c->inlen == sizeof c->in) {     /* the parser says 431 before this */
			client_answer(c, METRICS_HTTP_TOO_LARGE, &req);
			return;
		}
	}
}

static void on_client(struct ev_loop *loop, int fd, int mask, void *arg)
{
	(void)loop;
	(void)fd;
	struct mclient *c = arg;
	if (c->state == MC_WRITE) {
		if (mask & EV_WRITE)
			client_write(c);
		return;
	}
	if (mask & EV_READ)
		client_read(c);
}

static void client_watch(struct mclient *c, int mask)
{
	const char *err;
	if (ev_fd_set(c->m->srv->loop, c->fd, mask, on_client, c, &err) < 0) {
		log_error("metrics: %s", err);
		client_free(c);
	}
}

static void client_new(struct metrics *m, int fd)
{
	struct mclient *c = xcalloc(1, sizeof *c);
	c->m = m;
	c->fd = fd;
	c->state = MC_READ;
	ev_timer_init(&c->deadline, on_deadline, c);
	c->next = m->clients;
	if (c->next)
		c->next->prev = c;
	m->clients = c;
	m->nclients++;
	ev_timer_start(m->srv->loop, &c->deadline, METRICS_DEADLINE_MS);
	client_watch(c, EV_READ);
}

/* --- the listener --- */

static void on_accept(struct ev_loop *loop, int fd, int mask, void *arg);

static void accept_resume(struct ev_loop *loop, void *arg)
{
	struct metrics *m = arg;
	const char *err;
	if (m->fd >= 0 && ev_fd_set(loop, m->fd, EV_READ, on_accept, m, &err) < 0)
		log_error("metrics_listen %s: %s", m->srv->cfg->metrics_listen, err);
}

static void on_accept(struct ev_loop *loop, int fd, int mask, void *arg)
{
	(void)mask;
	struct metrics *m = arg;
	for (;;) {
		int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			log_warn("metrics_listen %s: accept: %m: not accepting for %d ms",
			         m->srv->cfg->metrics_listen, ACCEPT_PAUSE_MS);
			ev_fd_del(loop, fd);
			ev_timer_start(loop, &m->pause, ACCEPT_PAUSE_MS);
			return;
		}
		if (m->nclients >= METRICS_CLIENTS) {
			close(c);          /* a scraper does not need a ninth at once */
			continue;
		}
		client_new(m, c);
	}
}

static void name_slots(struct server *srv)
{
	for (int i = 0; i < srv->cfg->nlisteners; i++)
		stats_set_listener_name(i, srv->cfg->listeners[i].listen);
	int t = 0;
	for (int k = 0; k < srv->mods.n; k++)
		if (srv->mods.v[k]->desc->transport)
			stats_set_transport_name(t++, srv->mods.v[k]->desc->name);
}

int metrics_open(struct server *srv, struct buf *errs)
{
	struct config *cfg = srv->cfg;
	struct metrics *m = xcalloc(1, sizeof *m);
	m->srv = srv;
	m->fd = -1;
	m->hold_dir = xasprintf("%s/hold", cfg->spool);
	ev_timer_init(&m->pause, accept_resume, m);
	ev_timer_init(&m->spool_timer, spool_tick, m);
	srv->metrics = m;
	name_slots(srv);
	stats_mark_start((int64_t)time(NULL));
	ev_timer_start(srv->loop, &m->spool_timer, 0);
	if (!cfg->metrics_listen)
		return 0;
	struct sockaddr_storage ss;
	socklen_t len;
	const char *why, *err;
	if (config_parse_listen(cfg->metrics_listen, &ss, &len, &why) < 0) {
		buf_addf(errs, "metrics_listen %s: %s\n", cfg->metrics_listen, why);
		return -1;
	}
	int one = 1;
	m->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (m->fd < 0 || setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    (ss.ss_family == AF_INET6 &&
	     setsockopt(m->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
	    bind(m->fd, (struct sockaddr *)&ss, len) < 0 || listen(m->fd, 64) < 0) {
		config_error_at(cfg, config_lookup(&cfg->cfg, "metrics_listen"), errs,
		                "cannot listen on %s: %s", cfg->metrics_listen, strerror(errno));
		return -1;
	}
	if (ev_fd_set(srv->loop, m->fd, EV_READ, on_accept, m, &err) < 0) {
		buf_addf(errs, "metrics_listen %s: %s\n", cfg->metrics_listen, err);
		return -1;
	}
	log_info("metrics on http://%s/metrics", cfg->metrics_listen);
	return 0;
}

void metrics_close(struct server *srv)
{
	struct metrics *m = srv->metrics;
	if (!m)
		return;
	while (m->clients)
		client_free(m->clients);
	ev_timer_stop(srv->loop, &m->pause);
	ev_timer_stop(srv->loop, &m->spool_timer);
	if (m->fd >= 0) {
		ev_fd_del(srv->loop, m->fd);
		close(m->fd);
	}
	free(m->hold_dir);
	free(m);
	srv->metrics = NULL;
}
