/*
 * main.c - petreld: command line, start-up order, signals, shutdown.
 *
 *   petreld [-c FILE] [-f] [-t] [-n|-d|-p] [-V]
 *
 * Start-up: read and check the configuration; load the modules it names
 * (stages, filters, router, every module with a block, maildir); load
 * the TLS key pairs and the AUTH password file (root-only files work, and
 * -t checks them too); bind the listeners (and metrics_listen); give
 * the spool to 'user' (the one path root changes, opened without
 * following links) and drop privileges (the control socket,
 * SPOOL/control, is bound just before, in the spool given to the user);
 * open the spool, lock SPOOL/petreld.pid (a second petreld on the spool
 * stops) and
 * recover what the spool holds; run the loop.  SIGTERM: stop accepting, answer 421 to idle sessions, let
 * messages being committed finish (their 250 is sent), let deliveries in
 * flight finish, then exit 0.  What is queued stays queued.
 */
#include "auth.h"
#include "auth_throttle.h"
#include "config.h"
#include "control.h"
#include "log.h"
#include "metrics.h"
#include "module_load.h"
#include "queue.h"
#include "server.h"
#include "spool.h"
#include "tls.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

static void usage(void)
{
	fprintf(stderr, "usage: petreld [-c FILE] [-f] [-t] [-n|-d|-p] [-V]\n"
	        "  -c FILE  configuration file (default: the embedded local test configuration)\n"
	        "  -f       stay in the foreground, log to stderr\n"
	        "  -t       check the configuration and exit (0: valid)\n"
	        "  -n       print the settings that differ from the defaults and exit\n"
	        "  -d       print every setting's default and exit\n"
	        "  -p       print every setting's effective value, module blocks included, and exit\n"
	        "           (-n/-d/-p print petrel.conf syntax that -t accepts back)\n"
	        "  -V       print the version and exit\n"
	        "  -h       this help and the list of settings\n");
}

/* The modules group for -n/-d/-p: -n prints the configured blocks as they
 * are (a module setting has no default but "not set"); -d and -p print
 * each loaded module's whole settings table, values (-p) or "not set"
 * comments, then any other configured block as it is. */
static void show_modules(struct server *srv, enum config_show how, struct buf *o)
{
	config_setting_t *mods = config_lookup(&srv->cfg->cfg, "modules");
	if (how == CONFIG_SHOW_NONDEFAULT) {
		if (mods && config_setting_length(mods)) {
			buf_adds(o, "modules = ");
			config_render(mods, 0, o);
			buf_adds(o, ";\n");
		}
		return;
	}
	buf_adds(o, "modules = {\n");
	for (int k = 0; k < srv->mods.n; k++) {
		const struct module *m = srv->mods.v[k];
		const struct petrel_setting *st = m->desc->settings;
		config_setting_t *b = how == CONFIG_SHOW_EFFECTIVE ? m->conf.block : NULL;
		buf_addf(o, "  %s = {\n", m->desc->name);
		for (int j = 0; st && st[j].type != PETREL_SET_END; j++) {
			config_setting_t *s = b ? config_setting_get_member(b, st[j].name) : NULL;
			if (s) {
				buf_addf(o, "    %s = ", st[j].name);
				config_render(s, 2, o);
				buf_adds(o, ";\n");
			} else {
				buf_addf(o, "    # %s is not set: %s\n", st[j].name, st[j].help);
			}
		}
		buf_adds(o, "  };\n");
	}
	for (int i = 0; how == CONFIG_SHOW_EFFECTIVE && mods && i < config_setting_length(mods); i++) {
		config_setting_t *b = config_setting_get_elem(mods, i);
		if (module_find(&srv->mods, config_setting_name(b)))
			continue;
		buf_addf(o, "  %s = ", config_setting_name(b));
		config_render(b, 1, o);
		buf_adds(o, ";\n");
	}
	buf_adds(o, "};\n");
}

/*
 * sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (a path,
 * or '@' for the abstract namespace).  Without the variable it does nothing;
 * a failure is logged and otherwise ignored (systemd then times the start
 * out, which says more than a daemon refusing to run).
 */
static void notify_systemd(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t n = strlen(path);
	if (n >= sizeof sun.sun_path || (path[0] != '/' && path[0] != '@')) {
		log_error("NOTIFY_SOCKET '%s': not an absolute path or @abstract name", path);
		return;
	}
	memcpy(sun.sun_path, path, n);
	if (path[0] == '@')
		sun.sun_path[0] = 0;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	if (fd < 0 || sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun, len) < 0)
		log_error("NOTIFY_SOCKET %s: cannot send %s: %m", path, msg);
	if (fd >= 0)
		close(fd);
}

/* Load every module the configuration needs; errors go to errs. */
static int load_modules(struct server *srv, struct buf *errs)
{
	struct config *cfg = srv->cfg;
	int bad = 0;
	for (int i = 0; i < cfg->nlisteners; i++) {
		struct listener_conf *lc = &cfg->listeners[i];
		if (!lc->stage)
			continue;
		config_setting_t *where = config_setting_get_member(lc->setting, "stage");
		struct module *m = module_get(&srv->mods, cfg, lc->stage, where, errs);
		if (m && !m->desc->stage) {
			config_error_at(cfg, where, errs, "module '%s' is not a stage", lc->stage);
			m = NULL;
		}
		bad |= !m;
	}
	/* the pickup socket's sessions take the mta stage */
	if (cfg->pickup_path && !module_get(&srv->mods, cfg, "mta",
	                                    config_lookup(&cfg->cfg, "pickup_socket"), errs))
		bad = 1;
	config_setting_t *fl = config_lookup(&cfg->cfg, "filters");
	srv->filters = xcalloc((size_t)cfg->nfilters + 1, sizeof *srv->filters);
	for (int i = 0; i < cfg->nfilters; i++) {
		config_setting_t *where = config_setting_get_elem(fl, (unsigned)i);
		struct module *m = module_get(&srv->mods, cfg, cfg->filters[i], where, errs);
		if (m && !m->desc->filter) {
			config_error_at(cfg, where, errs, "module '%s' is not a filter", cfg->filters[i]);
			m = NULL;
		}
		if (m)
			srv->filters[srv->nfilters++] = m;
		bad |= !m;
	}
	for (int i = 0; i < cfg->nlisteners; i++) {
		struct listener_conf *lc = &cfg->listeners[i];
		for (int k = 0; k < lc->nfilters; k++) {
			config_setting_t *where = config_setting_get_elem(lc->filters_setting, (unsigned)k);
			struct module *m = module_get(&srv->mods, cfg, lc->filters[k], where, errs);
			if (m && !m->desc->filter) {
				config_error_at(cfg, where, errs, "module '%s' is not a filter", lc->filters[k]);
				m = NULL;
			}
			bad |= !m;
		}
	}
	config_setting_t *rw = config_lookup(&cfg->cfg, "router");
	srv->router = module_get(&srv->mods, cfg, cfg->router, rw, errs);
	if (srv->router && !srv->router->desc->router) {
		config_error_at(cfg, rw, errs, "module '%s' is not a router", cfg->router);
		srv->router = NULL;
	}
	bad |= !srv->router;
	config_setting_t *mods = config_lookup(&cfg->cfg, "modules");
	for (int i = 0; mods && i < config_setting_length(mods); i++) {
		config_setting_t *b = config_setting_get_elem(mods, (unsigned)i);
		bad |= !module_get(&srv->mods, cfg, config_setting_name(b), b, errs);
	}
	/* The default local transport, unless a block above already tried it. */
	if (!config_lookup(&cfg->cfg, "modules.maildir") && !module_find(&srv->mods, "maildir"))
		bad |= !module_get(&srv->mods, cfg, "maildir", NULL, errs);
	return bad ? -1 : 0;
}

/* One TLS context per TLS listener (into tls[], one per listener), and
 * the password file.  Errors go to errs, with the file and line of the
 * setting that names the file; what was read is returned all the same. */
static int read_secrets(struct config *cfg, struct tls_server **tls, struct auth_db **db,
                        struct buf *errs)
{
	int bad = 0;
	for (int i = 0; i < cfg->nlisteners; i++) {
		struct listener_conf *lc = &cfg->listeners[i];
		char err[512];
		if (lc->tls == TLS_NONE || !lc->tls_cert_file || !lc->tls_key_file)
			continue;
		const char *file;
		if (tls_server_new(lc->tls_cert_file, lc->tls_key_file, &tls[i], &file, err,
		                   sizeof err) < 0) {
			config_error_at(cfg, file == lc->tls_key_file ? lc->tls_key_setting
			                : lc->tls_cert_setting, errs, "%s", err);
			bad = 1;
		}
	}
	if (cfg->auth_passwords) {
		struct buf why = {0};
		*db = auth_db_load(cfg->auth_passwords, &why);
		if (!*db) {
			config_error_at(cfg, config_lookup(&cfg->cfg, "auth_passwords"), errs,
			                "%s: bad password file (below)", cfg->auth_passwords);
			buf_add(errs, why.data, why.len);
			bad = 1;
		}
		buf_free(&why);
	}
	return bad ? -1 : 0;
}

/* At start, while we may still be root. */
static int load_secrets(struct server *srv, struct buf *errs)
{
	srv->tls = xcalloc((size_t)srv->cfg->nlisteners + 1, sizeof *srv->tls);
	int bad = config_read_credentials(srv->cfg, errs) < 0;
	return read_secrets(srv->cfg, srv->tls, &srv->auth_db, errs) < 0 || bad ? -1 : 0;
}

/* SIGHUP: read the TLS key pairs and the password file again from the
 * files the configuration names (a renewed certificate, a new user), all
 * or nothing: on any error the ones in use stay and the error is logged.
 * Sessions already in TLS keep their context (OpenSSL counts references).
 * A password check running on a worker may still use the old password
 * table, so it is kept until exit.  The daemon runs as 'user' by now:
 * the files must be readable by it for this to work. */
static void reload_secrets(struct server *srv)
{
	struct config *cfg = srv->cfg;
	struct buf errs = {0};
	struct tls_server **tls = xcalloc((size_t)cfg->nlisteners + 1, sizeof *tls);
	struct auth_db *db = NULL;
	int ntls = 0;
	if (read_secrets(cfg, tls, &db, &errs) < 0) {
		for (int i = 0; i < cfg->nlisteners; i++)
			tls_server_free(&tls[i]);
		auth_db_free(&db);
		while (errs.len && errs.data[errs.len - 1] == '\n')
			errs.data[--errs.len] = 0;
		for (size_t k = 0; k < errs.len; k++)
			if (errs.data[k] == '\n')
				errs.data[k] = ' ';
		log_error("SIGHUP: reload failed, the key pairs and passwords in use stay: %s",
		          errs.data ? errs.data : "?");
		buf_free(&errs);
		free(tls);
		return;
	}
	for (int i = 0; i < cfg->nlisteners; i++) {
		if (!tls[i])
			continue;
		tls_server_free(&srv->tls[i]);
		srv->tls[i] = tls[i];
		srv->listeners[i].tls = tls[i];
		ntls++;
	}
	free(tls);
	if (db) {
		srv->old_auth_dbs = xrealloc(srv->old_auth_dbs,
		                             (size_t)(srv->nold_auth_dbs + 1) * sizeof *srv->old_auth_dbs);
		srv->old_auth_dbs[srv->nold_auth_dbs++] = srv->auth_db;
		srv->auth_db = db;
	}
	log_info("SIGHUP: reloaded %d TLS key pair(s)%s; other settings take effect at the next start",
	         ntls, db ? " and the password file" : "");
	buf_free(&errs);
}

static void secrets_free(struct server *srv)
{
	for (int i = 0; srv->tls && srv->cfg && i < srv->cfg->nlisteners; i++)
		tls_server_free(&srv->tls[i]);
	xfree(&srv->tls);
	auth_db_free(&srv->auth_db);
	for (int i = 0; i < srv->nold_auth_dbs; i++)
		auth_db_free(&srv->old_auth_dbs[i]);
	xfree(&srv->old_auth_dbs);
	srv->nold_auth_dbs = 0;
}

/* As root, before the drop: create the spool and give it to the user.
 * This is the only path root creates or changes: everything else (the
 * spool's subdirectories, the pid file, the maildirs, the ratelimit state)
 * is made after the drop, as the user.  The user may be able to write the
 * spool's parent and put a symbolic link in its place; so the spool is
 * opened without following one (O_NOFOLLOW), and it is the directory
 * opened that is checked and changed (fstat, fchown), never the name
 * again.  Refused: a spool that is a link or not a directory, or that
 * belongs to anyone but root or the user. */
__attribute__((warn_unused_result))
static int spool_give(const char *spool, const struct passwd *pw, struct buf *errs)
{
	if (mkdir(spool, 0700) < 0 && errno != EEXIST) {
		buf_addf(errs, "spool %s: %s\n", spool, strerror(errno));
		return -1;
	}
	int fd = open(spool, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		struct stat lst;
		if (lstat(spool, &lst) == 0 && S_ISLNK(lst.st_mode))
			buf_addf(errs, "spool %s: refused: it is a symbolic link (root gives the spool "
			         "to user %s and follows no link; name the real directory)\n", spool,
			         pw->pw_name);
		else if (e == ENOTDIR || e == ELOOP)
			buf_addf(errs, "spool %s: refused: not a directory\n", spool);
		else
			buf_addf(errs, "spool %s: %s\n", spool, strerror(e));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		buf_addf(errs, "spool %s: %s\n", spool, strerror(errno));
		close(fd);
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != pw->pw_uid) {
		buf_addf(errs, "spool %s: refused: owned by uid %d, neither root nor user %s\n",
		         spool, (int)st.st_uid, pw->pw_name);
		close(fd);
		return -1;
	}
	if ((st.st_uid != pw->pw_uid || st.st_gid != pw->pw_gid) &&
	    fchown(fd, pw->pw_uid, pw->pw_gid) < 0) {
		buf_addf(errs, "chown %s: %s\n", spool, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* Before the control socket is bound in it: the spool exists, and is
 * the user's when we are root (spool_give). */
static int spool_prepare(struct config *cfg, struct buf *errs)
{
	struct passwd *pw = cfg->user && getuid() == 0 ? getpwnam(cfg->user) : NULL;
	if (pw)
		return spool_give(cfg->spool, pw, errs);
	if (spool_mkdirs(cfg->spool) < 0) {
		buf_addf(errs, "spool %s: cannot create: %s\n", cfg->spool, strerror(errno));
		return -1;
	}
	return 0;
}

static int drop_privileges(struct config *cfg, struct buf *errs)
{
	if (!cfg->user)
		return 0;
	struct passwd *pw = getpwnam(cfg->user);
	if (!pw) {
		buf_addf(errs, "%s: user: no such user '%s'\n", cfg->file, cfg->user);
		return -1;
	}
	if (getuid() != 0) {
		if (getuid() != pw->pw_uid)
			log_warn("not started as root: staying uid %d instead of %s", (int)getuid(), cfg->user);
		return 0;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		buf_addf(errs, "cannot become user %s: %s\n", cfg->user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		buf_addf(errs, "privileges could not be dropped\n");
		return -1;
	}
	log_info("running as %s (uid %d)", cfg->user, (int)pw->pw_uid);
	return 0;
}

/* The pid file, SPOOL/petreld.pid, and the write lock (fcntl) we hold
 * on it while we run: whoever signals the pid the file names can check
 * that the process holds this lock (/proc/locks), so a pid written there
 * by someone else is not signalled (petrelctl itself talks to the control
 * socket, whose peer credentials name the daemon).  The lock also keeps
 * a second petreld off a spool in use: that is fatal.  Runs as the user,
 * after the drop.  Returns the descriptor (kept open until exit), or -1
 * when the file cannot be written (a warning). */
static int pidfile_lock(const char *pidfile)
{
	int fd = open(pidfile, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_warn("cannot write %s: %m", pidfile);
		return -1;
	}
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	if (fcntl(fd, F_SETLK, &fl) < 0) {
		struct flock who = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		if ((errno == EAGAIN || errno == EACCES) && fcntl(fd, F_GETLK, &who) == 0 &&
		    who.l_type != F_UNLCK)
			log_fatal("%s: the spool is in use by petreld pid %d", pidfile, (int)who.l_pid);
		log_warn("cannot lock %s: %m", pidfile);
		close(fd);
		return -1;
	}
	char line[32];
	int n = snprintf(line, sizeof line, "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, line, (size_t)n, 0) != n) {
		log_warn("cannot write %s: %m", pidfile);
		close(fd);
		return -1;
	}
	return fd;
}

static void check_stopped(struct ev_loop *loop, void *arg)
{
	struct server *srv = arg;
	if (srv->nsessions == 0 && spool_commits_pending(srv->spool) == 0 &&
	    queue_active(srv->queue) == 0 && workers_pending(srv->filter_workers) == 0) {
		ev_stop(loop);
		return;
	}
	ev_timer_start(loop, &srv->stop_timer, 20);
}

static void on_signal(struct ev_loop *loop, int fd, int mask, void *arg)
{
	(void)mask;
	struct server *srv = arg;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof si) == sizeof si) {
		if (si.ssi_signo == SIGUSR1) {
			if (!srv->stopping)
				queue_rescan(srv->queue);
			continue;
		}
		if (si.ssi_signo == SIGHUP) {
			if (!srv->stopping)
				reload_secrets(srv);
			continue;
		}
		if (srv->stopping)
			continue;
		log_info("%s: stopping: no new connections, finishing sessions and deliveries",
		         si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
		srv->stopping = true;
		notify_systemd("STOPPING=1");
		listeners_close(srv);
		sessions_shutdown(srv);
		queue_stop(srv->queue);
		ev_timer_init(&srv->stop_timer, check_stopped, srv);
		check_stopped(loop, srv);
	}
}

int main(int argc, char **argv)
{
	const char *file = NULL;
	int foreground = 0, check = 0, show = -1, opt;
	while ((opt = getopt(argc, argv, "c:ftndpVh")) != -1) {
		switch (opt) {
		case 'c': file = optarg; break;
		case 'f': foreground = 1; break;
		case 't': check = 1; break;
		case 'n': show = CONFIG_SHOW_NONDEFAULT; break;
		case 'd': show = CONFIG_SHOW_DEFAULTS; break;
		case 'p': show = CONFIG_SHOW_EFFECTIVE; break;
		case 'V':
			printf("petreld %s (module API %d.%d)\n", PACKAGE_VERSION, PETREL_API_MAJOR,
			       PETREL_API_MINOR);
			return 0;
		case 'h':
			usage();
			printf("\nsettings:\n");
			config_print_help();
			return 0;
		default:
			usage();
			return 1;
		}
	}
	if (optind != argc) {
		usage();
		return 1;
	}
	if (show >= 0)
		check = 1;
	log_open("petreld", foreground || check);
	struct buf errs = {0};
	struct server srv_storage = {0}, *srv = &srv_storage;
	srv->cfg = config_load(file, &errs);
	/* modules may set timers in init(): the loop exists before them */
	srv->loop = ev_loop_new();
	srv->mods.srv = srv;
	host_bind(srv);     /* host->global_string, is_own_address */
	if (srv->cfg) {
		(void)load_modules(srv, &errs);    /* errors are in errs */
		if (show < 0)   /* -n/-d/-p show the text, as postconf: no key files read */
			(void)load_secrets(srv, &errs);
	}
	if (show < 0 && srv->cfg && srv->cfg->user && !getpwnam(srv->cfg->user)) {
		config_setting_t *u = config_lookup(&srv->cfg->cfg, "user");
		config_error_at(srv->cfg, u, &errs, "no such user '%s'", srv->cfg->user);
	}
	if (errs.len || check) {
		int bad = errs.len != 0;
		if (bad) {
			fputs(errs.data, stderr);
		} else if (show >= 0) {
			struct buf o = {0};
			config_show(srv->cfg, (enum config_show)show, false, &o);
			show_modules(srv, (enum config_show)show, &o);
			fputs(o.data ? o.data : "", stdout);
			buf_free(&o);
		} else {
			printf("%s: configuration is valid\n", srv->cfg->file);
		}
		modules_free(&srv->mods);
		module_timers_free(srv);
		free(srv->filters);
		secrets_free(srv);
		config_free(&srv->cfg);
		ev_loop_free(&srv->loop);
		buf_free(&errs);
		return bad;
	}
	struct config *cfg = srv->cfg;
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* One descriptor per session: take all the kernel allows us. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (!foreground && daemon(0, 0) < 0)
		log_fatal("daemon: %m");
	if (listeners_open(srv, &errs) < 0 || metrics_open(srv, &errs) < 0 ||
	    spool_prepare(cfg, &errs) < 0 || !(srv->control = control_open(srv, &errs)) ||
	    drop_privileges(cfg, &errs) < 0 ||
	    !(srv->spool = spool_open(cfg->spool, srv->loop, &errs))) {
		fputs(errs.data ? errs.data : "start-up failed\n", stderr);
		log_error("%s", errs.data ? errs.data : "start-up failed");
		return 1;
	}
	for (int k = 0; k < srv->mods.n; k++)
		srv->mods.v[k]->conf.srv = srv;
	for (int i = 0; i < srv->nlisteners; i++) {
		struct listener *l = &srv->listeners[i];
		struct listener_conf *lc = &cfg->listeners[i];
		l->stage = module_get(&srv->mods, cfg, lc->stage, NULL, &errs);
		l->tls = srv->tls[i];
		if (lc->filters) {
			l->filters = xcalloc((size_t)lc->nfilters + 1, sizeof *l->filters);
			for (int k = 0; k < lc->nfilters; k++)
				l->filters[l->nfilters++] = module_get(&srv->mods, cfg, lc->filters[k], NULL, &errs);
		} else {
			l->filters = srv->filters;
			l->nfilters = srv->nfilters;
		}
	}
	int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	const char *err;
	if (sfd < 0 || ev_fd_set(srv->loop, sfd, EV_READ, on_signal, srv, &err) < 0)
		log_fatal("signalfd: %m");
	srv->workers = workers_start(srv->loop, cfg->delivery_workers);
	/* Filters' blocking work and password hashes get their own threads:
	 * behind a queue of maildir syncs they would wait for deliveries. */
	srv->filter_workers = workers_start(srv->loop, cfg->filter_workers);
	srv->queue = queue_new(srv);
	char *pidfile = xasprintf("%s/petreld.pid", cfg->spool);
	int pidfd = pidfile_lock(pidfile);
	struct qmsg **rec;
	int nrec;
	if (spool_recover(srv->spool, &rec, &nrec, &errs) < 0)
		log_fatal("%s", errs.data);
	for (int i = 0; i < nrec; i++)
		queue_add(srv->queue, rec[i]);
	free(rec);
	if (control_start(srv->control, &errs) < 0)
		log_fatal("%s", errs.data);
	if (pickup_open(srv, &errs) < 0) {
		fputs(errs.data, stderr);
		log_error("%s", errs.data);
		return 1;
	}
	/* Everything opened at start is open: what is left is the sessions'. */
	if (listeners_fd_budget(srv, &errs) < 0) {
		fputs(errs.data, stderr);
		log_error("%s", errs.data);
		return 1;
	}
	log_info("petreld %s started: hostname %s, spool %s, %d modules", PACKAGE_VERSION,
	         cfg->hostname, cfg->spool, srv->mods.n);
	/* the listeners listen and the queue is recovered: connections are
	 * accepted from here on (backlog until the loop runs) */
	notify_systemd("READY=1\nSTATUS=accepting mail");
	ev_run(srv->loop);
	control_free(&srv->control);
	metrics_close(srv);
	workers_stop(&srv->workers);
	workers_stop(&srv->filter_workers);
	auth_throttle_free(&srv->auth_throttle);
	spool_close(&srv->spool);
	if (pidfd >= 0) {
		unlink(pidfile);
		close(pidfd);           /* the lock goes with it */
	}
	free(pidfile);
	log_info("stopped: %llu messages accepted, %d left in the queue",
	         (unsigned long long)srv->counter_accepted, queue_size(srv->queue));
	queue_free(&srv->queue);
	module_timers_free(srv);
	module_fds_free(srv);
	ev_fd_del(srv->loop, sfd);
	close(sfd);
	listeners_close(srv);
	pickup_free(srv);
	for (int i = 0; i < srv->nlisteners; i++)
		if (srv->listeners[i].filters != srv->filters)
			free(srv->listeners[i].filters);
	free(srv->listeners);
	modules_free(&srv->mods);
	free(srv->filters);
	secrets_free(srv);
	ev_loop_free(&srv->loop);
	config_free(&srv->cfg);
	buf_free(&errs);
	return 0;
}
