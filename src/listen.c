/*
 * listen.c - the listening sockets, and the descriptor budget.
 *
 * Bound before privileges are dropped, with a deep backlog (511), and
 * drained on each wakeup until accept() says EAGAIN.
 *
 * Out of descriptors (EMFILE, ENFILE) or memory, accept() fails and the
 * connection stays in the backlog: the socket stays readable, so the
 * listener is not watched for ACCEPT_PAUSE_MS (a timer), and the warning
 * is logged at most once per ACCEPT_WARN_MS with the count of failures
 * since the last one.  Connections wait in the backlog meanwhile and are
 * taken once sessions end.
 *
 * The budget: at start, with everything open that the daemon opens at
 * start, max_connections is lowered to what RLIMIT_NOFILE leaves (see
 * listeners_fd_budget), so that accept() is not where the limit is met.
 */
#include "log.h"
#include "server.h"
#include "generation.h"
#include "stats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define BACKLOG 511
#define ACCEPT_PAUSE_MS 250
#define ACCEPT_WARN_MS 10000

static void on_accept(struct ev_loop *loop, int fd, int mask, void *arg);

static void accept_resume(struct ev_loop *loop, void *arg)
{
	struct listener *l = arg;
	const char *err;
	if (l->fd < 0)
		return;
	if (ev_fd_set(loop, l->fd, EV_READ, on_accept, l, &err) < 0)
		log_error("listener %s: %s", l->conf->listen, err);
}

/* accept() failed for want of a resource: wait before trying again. */
static void accept_pause(struct listener *l, int errnum)
{
	struct ev_loop *loop = l->srv->loop;
	uint64_t now = ev_now_ms();
	l->unwarned++;
	if (!l->warned_at || now - l->warned_at >= ACCEPT_WARN_MS) {
		log_warn("accept on %s: %s: not accepting for %d ms (%lu failure(s) since the last "
		         "warning; %d sessions; raise RLIMIT_NOFILE or lower max_connections)",
		         l->conf->listen, strerror(errnum), ACCEPT_PAUSE_MS, l->unwarned,
		         l->srv->nsessions);
		l->warned_at = now;
		l->unwarned = 0;
	}
	ev_fd_del(loop, l->fd);
	ev_timer_start(loop, &l->pause_timer, ACCEPT_PAUSE_MS);
}

static void on_accept(struct ev_loop *loop, int fd, int mask, void *arg)
{
	(void)loop;
	(void)mask;
	struct listener *l = arg;
	struct server *srv = l->srv;
	for (;;) {
		int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0) {
			switch (errno) {
			case EAGAIN:
#if EWOULDBLOCK != EAGAIN
			case EWOULDBLOCK:
#endif
				return;
			/* the connection went away, or its network did (accept(2)
			 * on Linux): take the next one */
			case EINTR: case ECONNABORTED: case EPROTO: case ENETDOWN:
			case ENOPROTOOPT: case EHOSTDOWN: case ENONET: case EHOSTUNREACH:
			case EOPNOTSUPP: case ENETUNREACH:
				continue;
			default:    /* EMFILE, ENFILE, ENOBUFS, ENOMEM, ...: it would repeat */
				accept_pause(l, errno);
				return;
			}
		}
		stats_connection(l->slot);
		session_accept(srv, l, c);
	}
}

void listener_init(struct server *srv, struct generation *g, struct listener *l,
                   struct listener_conf *lc)
{
	l->conf = lc;
	l->srv = srv;
	l->gen = g;
	l->fd = -1;
	l->slot = -1;
	ev_timer_init(&l->pause_timer, accept_resume, l);
}

/* Bind and listen, not watched yet.  reload: privileges may be gone. */
static int listener_bind(struct listener *l, bool reload, struct buf *errs)
{
	struct listener_conf *lc = l->conf;
	l->fd = socket(lc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (l->fd < 0 ||
	    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    (lc->addr.ss_family == AF_INET6 &&
	     setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
	    bind(l->fd, (struct sockaddr *)&lc->addr, lc->addrlen) < 0 ||
	    listen(l->fd, BACKLOG) < 0) {
		int e = errno;
		bool priv = reload && e == EACCES && geteuid() != 0;
		config_error_at(l->gen->cfg, lc->setting, errs, "cannot listen on %s: %s%s", lc->listen,
		                strerror(e), priv ? " (a port below 1024 needs root, and petreld "
		                "runs as its user by now: restart it to bind this one)" : "");
		if (l->fd >= 0)
			close(l->fd);
		l->fd = -1;
		return -1;
	}
	return 0;
}

static int listener_watch(struct server *srv, struct listener *l, struct buf *errs)
{
	const char *err;
	if (ev_fd_set(srv->loop, l->fd, EV_READ, on_accept, l, &err) < 0) {
		buf_addf(errs, "listener %s: %s\n", l->conf->listen, err);
		return -1;
	}
	return 0;
}

int listeners_open(struct server *srv, struct buf *errs)
{
	struct generation *g = srv->gen;
	for (int i = 0; i < g->nlisteners; i++) {
		struct listener *l = &g->listeners[i];
		if (listener_bind(l, false, errs) < 0 || listener_watch(srv, l, errs) < 0)
			return -1;
		l->slot = stats_listener_slot(l->conf->listen);
		log_info("listening on %s (stage %s)", l->conf->listen, l->conf->stage);
	}
	return 0;
}

static bool same_address(const struct listener_conf *a, const struct listener_conf *b)
{
	return a->addrlen == b->addrlen && !memcmp(&a->addr, &b->addr, a->addrlen);
}

/* Move og's socket to ng's view: no close, no re-bind, the backlog stays. */
static void listener_move(struct server *srv, struct listener *from, struct listener *to)
{
	if (ev_timer_armed(&from->pause_timer))
		ev_timer_stop(srv->loop, &from->pause_timer);
	ev_fd_del(srv->loop, from->fd);
	to->fd = from->fd;
	to->slot = from->slot;
	from->fd = -1;
}

int listeners_adopt(struct server *srv, struct generation *ng, struct generation *og,
                    struct buf *errs)
{
	int *from = xcalloc((size_t)ng->nlisteners + 1, sizeof *from);
	bool *taken = xcalloc((size_t)og->nlisteners + 1, sizeof *taken);
	int bad = 0;
	for (int i = 0; i < ng->nlisteners; i++) {
		from[i] = -1;
		for (int j = 0; j < og->nlisteners && from[i] < 0; j++)
			if (!taken[j] && og->listeners[j].fd >= 0 &&
			    same_address(ng->listeners[i].conf, og->listeners[j].conf)) {
				from[i] = j;
				taken[j] = true;
			}
	}
	/* the new addresses first: a failure leaves the running ones as they are */
	for (int i = 0; i < ng->nlisteners && !bad; i++)
		if (from[i] < 0 && listener_bind(&ng->listeners[i], true, errs) < 0)
			bad = 1;
	if (bad) {
		for (int i = 0; i < ng->nlisteners; i++)
			if (from[i] < 0)
				listener_release(srv, &ng->listeners[i]);
		free(from);
		free(taken);
		return -1;
	}
	for (int i = 0; i < ng->nlisteners; i++) {
		struct listener *l = &ng->listeners[i];
		if (from[i] >= 0) {
			listener_move(srv, &og->listeners[from[i]], l);
		} else {
			l->slot = stats_listener_slot(l->conf->listen);
			log_info("reload: listening on %s (stage %s)", l->conf->listen, l->conf->stage);
		}
		struct buf e = {0};
		if (listener_watch(srv, l, &e) < 0)
			log_error("reload: %s", e.data);
		buf_free(&e);
	}
	for (int j = 0; j < og->nlisteners; j++)
		if (!taken[j] && og->listeners[j].fd >= 0) {
			log_info("reload: no longer listening on %s", og->listeners[j].conf->listen);
			listener_release(srv, &og->listeners[j]);
		}
	if (og->pickup && og->pickup->fd >= 0 && ng->pickup) {
		listener_move(srv, og->pickup, ng->pickup);
		struct buf e = {0};
		if (listener_watch(srv, ng->pickup, &e) < 0)
			log_error("reload: %s", e.data);
		buf_free(&e);
	}
	free(from);
	free(taken);
	return 0;
}

/*
 * The pickup socket (pickup_socket): local mail from petrel-sendmail, over
 * SMTP on a Unix socket that every local user may connect to.  Opened
 * after the privilege drop, as the user, once the pid file lock says no
 * other petreld owns this spool (so a socket left at the path is stale
 * and may go).  Its sessions take the mta stage and the global filter
 * chain; smtp_server.c gives them the peer's uid (SO_PEERCRED).
 *
 * Every local user must reach it: inside the spool, the spool is made
 * traversable (0711: names cannot be listed, and its subdirectories stay
 * 0700) and the socket's directory is made 0755, as Postfix's
 * queue_directory and public/ are.
 */
static int pickup_dir(const struct config *cfg, const char *dir, struct buf *errs)
{
	size_t n = strlen(cfg->spool);
	if (!strncmp(dir, cfg->spool, n) && (dir[n] == '/' || !dir[n])) {
		struct stat st;
		if (stat(cfg->spool, &st) == 0 && (st.st_mode & 0011) != 0011) {
			mode_t m = (st.st_mode & 07777) | 0011;
			if (chmod(cfg->spool, m) < 0) {
				buf_addf(errs, "pickup_socket %s: cannot make the spool %s traversable for local "
				         "users: %s (or set pickup_socket = \"\")\n", cfg->pickup_path,
				         cfg->spool, strerror(errno));
				return -1;
			}
			log_info("spool %s: mode %04o -> %04o, so that local users reach the pickup socket",
			         cfg->spool, (unsigned)(st.st_mode & 07777), (unsigned)m);
		}
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		buf_addf(errs, "pickup_socket %s: cannot make %s: %s\n", cfg->pickup_path, dir,
		         strerror(errno));
		return -1;
	}
	struct stat st;
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		buf_addf(errs, "pickup_socket %s: %s is not a directory\n", cfg->pickup_path, dir);
		return -1;
	}
	if ((st.st_mode & 0005) != 0005 && st.st_uid == geteuid())
		(void)chmod(dir, (st.st_mode & 07777) | 0755);
	return 0;
}

int pickup_open(struct server *srv, struct buf *errs)
{
	struct config *cfg = srv->cfg;
	if (!cfg->pickup_path)
		return 0;
	const char *path = cfg->pickup_path;
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = 0;
	int r = pickup_dir(cfg, dir, errs);
	free(dir);
	if (r < 0)
		return -1;
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			buf_addf(errs, "pickup_socket %s: exists and is not a socket\n", path);
			return -1;
		}
		(void)unlink(path);     /* stale: the pid file lock is ours */
	}
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);   /* length checked by config.c */
	struct listener *l = srv->gen->pickup;     /* made with the generation */
	const char *err;
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&sun, sizeof sun) < 0 ||
	    chmod(path, 0666) < 0 || listen(l->fd, BACKLOG) < 0) {
		buf_addf(errs, "pickup_socket %s: %s (or set pickup_socket = \"\")\n", path,
		         strerror(errno));
		return -1;
	}
	if (!l->stage || ev_fd_set(srv->loop, l->fd, EV_READ, on_accept, l, &err) < 0) {
		buf_addf(errs, "pickup_socket %s: %s\n", path, l->stage ? err : "no mta stage");
		return -1;
	}
	log_info("listening on %s (local submission)", path);
	return 0;
}

void listener_release(struct server *srv, struct listener *l)
{
	if (l->srv && ev_timer_armed(&l->pause_timer))
		ev_timer_stop(srv->loop, &l->pause_timer);
	if (l->fd >= 0) {
		ev_fd_del(srv->loop, l->fd);
		close(l->fd);
		l->fd = -1;
	}
}

void pickup_free(struct server *srv)
{
	struct generation *g = srv->gen;
	if (!g || !g->pickup)
		return;
	listener_release(srv, g->pickup);
	if (srv->cfg->pickup_path)
		(void)unlink(srv->cfg->pickup_path);
}

void listeners_close(struct server *srv)
{
	struct generation *g = srv->gen;
	if (g->pickup)
		listener_release(srv, g->pickup);
	for (int i = 0; i < g->nlisteners; i++)
		listener_release(srv, &g->listeners[i]);
}

/* Descriptors open now (/proc/self/fd), or -1 when that cannot be read. */
static int fds_open(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;     /* the directory's own */
}

/*
 * Sized from what the daemon holds:
 *   - what is open now (listeners, epoll, signalfd, the workers' eventfds,
 *     the spool's directories, whatever modules opened in init(), logs);
 *   - FD_SPARE for what opens later without a session: syslog, OpenSSL,
 *     DNS sockets (c-ares), bounces, the pid file, a module's lazy files;
 *   - 4 per delivery worker: the queue file, the maildir file being
 *     written, and its tmp/ and new/ directories for the syncs;
 *   - 2 per filter worker: a filter's blocking work opens a file or a socket;
 *   - per session its socket, and for one session in FD_TXN_SHARE a queue
 *     slot (a message in DATA or BDAT holds one; an idle session does not):
 *     should more be sending at once, the slot open fails and DATA gets a
 *     4xx, while the sessions' sockets still fit.
 * A module that holds descriptors per session (a milter) is not counted:
 * if it uses the sessions' share, accept() meets EMFILE and backs off.
 */
#define FD_SPARE 32
#define FD_TXN_SHARE 4

int listeners_fd_budget(struct server *srv, struct buf *errs)
{
	struct config *cfg = srv->cfg;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	int open_now = fds_open();
	if (open_now < 0)
		open_now = 16 + 4 * cfg->nlisteners;
	long long keep = (long long)open_now + FD_SPARE + 4LL * cfg->delivery_workers +
	                 2LL * cfg->filter_workers;
	long long fit = ((long long)rl.rlim_cur - keep) * FD_TXN_SHARE / (FD_TXN_SHARE + 1);
	if (fit < 1) {
		buf_addf(errs, "RLIMIT_NOFILE is %llu: too few descriptors for even one session "
		         "(%d open at start, %lld kept for deliveries, filters, DNS and TLS); raise "
		         "it (ulimit -n, systemd LimitNOFILE=) to %lld or more, or lower "
		         "delivery_workers\n", (unsigned long long)rl.rlim_cur, open_now,
		         keep - open_now, keep + 20);
		return -1;
	}
	if (fit < cfg->max_connections) {
		log_warn("max_connections lowered from %d to %lld: RLIMIT_NOFILE is %llu (%d open at "
		         "start, %lld kept for deliveries, filters, DNS and TLS); raise it (ulimit -n, "
		         "systemd LimitNOFILE=) to %lld for %d",
		         cfg->max_connections, fit, (unsigned long long)rl.rlim_cur, open_now,
		         keep - open_now,
		         keep + (long long)cfg->max_connections * (FD_TXN_SHARE + 1) / FD_TXN_SHARE + 1,
		         cfg->max_connections);
		cfg->max_connections = (int)fit;
	}
	srv->max_connections_fit = (int)(fit < INT_MAX ? fit : INT_MAX);
	return 0;
}
