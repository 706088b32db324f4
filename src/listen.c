/*
 * listen.c - the listening sockets.
 *
 * Bound before privileges are dropped, with a deep backlog (511), and
 * drained on each wakeup until accept() says EAGAIN.
 */
#include "log.h"
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BACKLOG 511

static void on_accept(struct ev_loop *loop, int fd, int mask, void *arg)
{
	(void)loop;
	(void)mask;
	struct listener *l = arg;
	struct server *srv = l->srv;
	for (;;) {
		int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("accept on %s: %m", l->conf->listen);
			return;
		}
		session_accept(srv, l, c);
	}
}

int listeners_open(struct server *srv, struct buf *errs)
{
	struct config *cfg = srv->cfg;
	srv->listeners = xcalloc((size_t)cfg->nlisteners, sizeof *srv->listeners);
	srv->nlisteners = cfg->nlisteners;
	for (int i = 0; i < cfg->nlisteners; i++) {
		struct listener *l = &srv->listeners[i];
		struct listener_conf *lc = &cfg->listeners[i];
		l->conf = lc;
		l->srv = srv;
		l->fd = socket(lc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int one = 1;
		const char *err;
		if (l->fd < 0 ||
		    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
		    (lc->addr.ss_family == AF_INET6 &&
		     setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
		    bind(l->fd, (struct sockaddr *)&lc->addr, lc->addrlen) < 0 ||
		    listen(l->fd, BACKLOG) < 0) {
			config_error_at(cfg, lc->setting, errs, "cannot listen on %s: %s", lc->listen,
			                strerror(errno));
			return -1;
		}
		if (ev_fd_set(srv->loop, l->fd, EV_READ, on_accept, l, &err) < 0) {
			buf_addf(errs, "listener %s: %s\n", lc->listen, err);
			return -1;
		}
		log_info("listening on %s (stage %s)", lc->listen, lc->stage);
	}
	return 0;
}

void listeners_close(struct server *srv)
{
	for (int i = 0; i < srv->nlisteners; i++) {
		struct listener *l = &srv->listeners[i];
		if (l->fd >= 0) {
			ev_fd_del(srv->loop, l->fd);
			close(l->fd);
			l->fd = -1;
		}
	}
}
