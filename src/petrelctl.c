/*
 * petrelctl - look into and steer a running petreld over its control
 * socket (doc/control-protocol.md), and set AUTH passwords.
 *
 *   petrelctl [-c FILE | -s SPOOL] [--json] COMMAND [ARG...]
 *
 * The daemon is found from its configuration, read with petreld's own
 * code (config.c), so control_socket and spool resolve as they do for
 * the daemon: -c FILE (default PETREL_CONF, the installed petrel.conf),
 * or -s SPOOL for SPOOL/control.  Exit codes are in usage() and
 * petrelctl(8); every error is one line on stderr.
 */
#include "config.h"
#include "ctl_json.h"
#include "log.h"
#include "mem.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifndef PETREL_CONF
#define PETREL_CONF "/etc/petrel/petrel.conf"
#endif

/* Exit codes (sysexits(3) where one fits). */
enum {
	EXIT_FAILED = 1,         /* the daemon refused or failed the request */
	EXIT_USAGE = 64,         /* EX_USAGE */
	EXIT_STATE = 65,         /* EX_DATAERR: the message is not in that state (held, not held) */
	EXIT_UNKNOWN_QID = 67,   /* EX_NOUSER: no such queue id */
	EXIT_NOT_RUNNING = 69,   /* EX_UNAVAILABLE: nothing answers on the socket */
	EXIT_BUSY = 75,          /* EX_TEMPFAIL: in a delivery attempt, too many clients: try again */
	EXIT_PERMISSION = 77,    /* EX_NOPERM */
	EXIT_CONFIG = 78,        /* EX_CONFIG */
};

#define REPLY_LINE_MAX (64u << 20)

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: petrelctl [-c FILE | -s SPOOL] [--json] COMMAND [ARG...]\n"
	        "  -c FILE   petreld's configuration (default %s)\n"
	        "  -s SPOOL  talk to the daemon of this spool (SPOOL/control)\n"
	        "  --json    print the daemon's JSON lines (queue, show, stats)\n"
	        "commands:\n"
	        "  queue                 the queue, as mailq: id, size, arrival, sender, recipients\n"
	        "  show QID              one message: envelope, recipients, retry times, headers\n"
	        "  hold QID...           keep messages from delivery until released (survives restarts)\n"
	        "  release QID...        deliver held messages again\n"
	        "  delete QID...|ALL     remove messages, without a bounce\n"
	        "  flush [QID...]        retry deferred messages now (all when none is named)\n"
	        "  requeue               start every message's retry backoff again, retry now\n"
	        "  stats                 counters since the daemon started\n"
	        "  reload                read the whole configuration again (as petreld -t checks it):\n"
	        "                        new sessions take it, open ones finish with theirs; a file\n"
	        "                        with errors is refused (exit 78) and the running one stays\n"
	        "  passwd USER           set USER's AUTH password in the auth_passwords file\n"
	        "exit: 0 ok, 1 failed, 64 usage, 65 wrong state (held / not held), 67 unknown queue id,\n"
	        "      69 petreld not running, 75 busy (try again), 77 permission denied,\n"
	        "      78 configuration\n", PETREL_CONF);
}

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("petrelctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(code);
}

/* --- the connection --- */

struct conn {
	int fd;
	const char *path;
	char *buf;
	size_t len, cap;
	pid_t peer;
	int send_errno;          /* the request could not be sent whole */
};

static void conn_open(struct conn *c, const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof sun.sun_path)
		die(EXIT_CONFIG, "%s: path too long for a Unix socket", path);
	memcpy(sun.sun_path, path, strlen(path));
	c->path = path;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die(EXIT_FAILED, "socket: %s", strerror(errno));
	if (connect(c->fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		int e = errno;
		if (e == EACCES || e == EPERM)
			die(EXIT_PERMISSION, "%s: permission denied (only root and petreld's user may "
			    "use the control socket)", path);
		if (e == ENOENT || e == ECONNREFUSED || e == ENOTSOCK)
			die(EXIT_NOT_RUNNING, "petreld is not running (nothing answers on %s)", path);
		die(EXIT_FAILED, "%s: %s", path, strerror(e));
	}
	struct ucred uc = {0};
	socklen_t len = sizeof uc;
	c->peer = getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0 ? uc.pid : 0;
	struct timeval tv = { .tv_sec = 60 };
	(void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void conn_send(struct conn *c, const char *line)
{
	size_t n = strlen(line), off = 0;
	while (off < n) {
		ssize_t w = send(c->fd, line + off, n - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			/* refused at once (peer credentials): its one line waits
			 * to be read; request() reads it or says the send failed */
			c->send_errno = w < 0 ? errno : EPIPE;
			return;
		}
		off += (size_t)w;
	}
}

/* The next reply line (without its newline), or NULL at the end. */
static char *conn_line(struct conn *c, size_t *lenp)
{
	static size_t consumed;
	if (consumed) {
		memmove(c->buf, c->buf + consumed, c->len - consumed);
		c->len -= consumed;
		consumed = 0;
	}
	for (;;) {
		char *nl = c->buf ? memchr(c->buf, '\n', c->len) : NULL;
		if (nl) {
			*nl = 0;
			consumed = (size_t)(nl - c->buf) + 1;
			*lenp = (size_t)(nl - c->buf);
			return c->buf;
		}
		if (c->len >= REPLY_LINE_MAX)
			die(EXIT_FAILED, "a reply line longer than %u bytes", REPLY_LINE_MAX);
		if (c->cap - c->len < 65536) {
			c->cap = c->cap ? c->cap * 2 : 131072;
			c->buf = xrealloc(c->buf, c->cap);
		}
		ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			die(EXIT_FAILED, "petreld did not answer within 60 s");
		if (n < 0 && errno == ECONNRESET)
			n = 0;
		if (n < 0)
			die(EXIT_FAILED, "%s: %s", c->path, strerror(errno));
		if (n == 0)
			return NULL;
		c->len += (size_t)n;
	}
}

static int code_exit(const char *code)
{
	static const struct { const char *code; int exit; } map[] = {
		{ "unknown_qid", EXIT_UNKNOWN_QID }, { "usage", EXIT_USAGE },
		{ "permission", EXIT_PERMISSION }, { "busy", EXIT_BUSY }, { "too_many", EXIT_BUSY },
		{ "held", EXIT_STATE }, { "not_held", EXIT_STATE }, { "config", EXIT_CONFIG },
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (!strcmp(map[i].code, code))
			return map[i].exit;
	return EXIT_FAILED;
}

typedef void line_fn(const struct ctl_json *v, const char *raw, void *arg);

/* reload: errors and notes to stderr, the new generation to stdout */
static void print_reload_line(const struct ctl_json *v, const char *raw, void *arg)
{
	(void)raw;
	(void)arg;
	if (ctl_json_get(v, "error"))
		fprintf(stderr, "%s\n", ctl_json_str(v, "error"));
	else if (ctl_json_get(v, "note"))
		fprintf(stderr, "petrelctl: note: %s\n", ctl_json_str(v, "note"));
	else if (ctl_json_get(v, "generation"))
		printf("petreld: configuration %s reloaded (generation %.0f)\n", ctl_json_str(v, "file"),
		       ctl_json_num(v, "generation"));
}

/* Send one request; each reply line before the last goes to fn (or is
 * printed as it is, with --json); the last says how it went.  Returns
 * the exit code. */
static int request(struct conn *c, const char *req, bool json, line_fn *fn, void *arg)
{
	conn_send(c, req);
	size_t len;
	char *line;
	while ((line = conn_line(c, &len))) {
		struct ctl_json *v = ctl_json_parse(line, len);
		if (!v)
			die(EXIT_FAILED, "petreld sent a line that is not JSON: %.200s", line);
		const struct ctl_json *ok = ctl_json_get(v, "ok");
		if (ok && ok->t == CJ_BOOL) {
			int rc = 0;
			if (!ok->b) {
				rc = code_exit(ctl_json_str(v, "code"));
				fprintf(stderr, "petrelctl: %s\n", ctl_json_str(v, "error"));
			}
			ctl_json_free(&v);
			return rc;
		}
		if (json) {
			fwrite(line, 1, len, stdout);
			fputc('\n', stdout);
		} else if (fn) {
			fn(v, line, arg);
		}
		ctl_json_free(&v);
	}
	if (c->send_errno)
		die(EXIT_FAILED, "%s: cannot send the request: %s", c->path, strerror(c->send_errno));
	die(EXIT_FAILED, "petreld closed the connection before its reply ended");
}

/* --- human output --- */

static void fmt_time(double t, char *out, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (!t || !localtime_r(&tt, &tm) || !strftime(out, size, "%a %b %e %H:%M:%S", &tm))
		snprintf(out, size, "-");
}

struct totals {
	unsigned long long bytes;
	int n;
};

static void print_queue_line(const struct ctl_json *m, const char *raw, void *arg)
{
	(void)raw;
	struct totals *t = arg;
	const char *state = ctl_json_str(m, "state");
	char when[64];
	fmt_time(ctl_json_num(m, "arrival"), when, sizeof when);
	const char *sender = ctl_json_str(m, "sender");
	unsigned long long size = (unsigned long long)ctl_json_num(m, "size");
	/* mailq's marks: '*' in a delivery attempt, '!' held */
	printf("%-20s%c %9llu %s  %s\n", ctl_json_str(m, "qid"),
	       !strcmp(state, "active") ? '*' : !strcmp(state, "held") ? '!' : ' ', size, when,
	       *sender ? sender : "<>");
	const struct ctl_json *rc = ctl_json_get(m, "recipients");
	for (int i = 0; rc && rc->t == CJ_ARR && i < rc->n; i++) {
		const struct ctl_json *d = &rc->items[i];
		const char *err = ctl_json_str(d, "last_error");
		if (*err)
			printf("%53s(%s)\n", "", err);
		printf("%53s%s [%s]\n", "", ctl_json_str(d, "address"), ctl_json_str(d, "state"));
	}
	printf("\n");
	t->bytes += size;
	t->n++;
}

static void print_show_line(const struct ctl_json *v, const char *raw, void *arg)
{
	(void)raw;
	(void)arg;
	const struct ctl_json *h = ctl_json_get(v, "headers");
	if (h && h->t == CJ_STR) {
		printf("headers:\n%s", h->str);
		if (ctl_json_bool(v, "truncated"))
			printf("[... more headers than shown]\n");
		return;
	}
	char when[64];
	fmt_time(ctl_json_num(v, "arrival"), when, sizeof when);
	printf("queue id: %s\nstate:    %s\nsize:     %.0f\narrival:  %s\nsender:   <%s>\n"
	       "attempts: %.0f\n", ctl_json_str(v, "qid"), ctl_json_str(v, "state"),
	       ctl_json_num(v, "size"), when, ctl_json_str(v, "sender"), ctl_json_num(v, "attempts"));
	if (*ctl_json_str(v, "body"))
		printf("body:     %s\n", ctl_json_str(v, "body"));
	if (*ctl_json_str(v, "ret") || *ctl_json_str(v, "envid"))
		printf("dsn:      ret=%s envid=%s\n", *ctl_json_str(v, "ret") ? ctl_json_str(v, "ret") : "-",
		       *ctl_json_str(v, "envid") ? ctl_json_str(v, "envid") : "-");
	const struct ctl_json *rc = ctl_json_get(v, "recipients");
	for (int i = 0; rc && rc->t == CJ_ARR && i < rc->n; i++) {
		const struct ctl_json *d = &rc->items[i];
		printf("recipient: <%s> %s via %s, %.0f attempt(s)", ctl_json_str(d, "address"),
		       ctl_json_str(d, "state"), ctl_json_str(d, "transport"), ctl_json_num(d, "attempts"));
		if (ctl_json_num(d, "next_try")) {
			fmt_time(ctl_json_num(d, "next_try"), when, sizeof when);
			printf(", next try %s", when);
		}
		printf("\n");
		if (*ctl_json_str(d, "orig"))
			printf("  original recipient: <%s>\n", ctl_json_str(d, "orig"));
		if (*ctl_json_str(d, "last_error"))
			printf("  last error: %s\n", ctl_json_str(d, "last_error"));
		if (*ctl_json_str(d, "relay"))
			printf("  last relay: %s\n", ctl_json_str(d, "relay"));
	}
}

static void print_act_line(const struct ctl_json *v, const char *raw, void *arg)
{
	(void)raw;
	(void)arg;
	if (ctl_json_get(v, "deleted")) {
		printf("%.0f message(s) deleted", ctl_json_num(v, "deleted"));
		if (ctl_json_num(v, "busy"))
			printf(", %.0f in a delivery attempt (not deleted)", ctl_json_num(v, "busy"));
		printf("\n");
		return;
	}
	const char *err = ctl_json_str(v, "error");
	if (*err)
		fprintf(stderr, "petrelctl: %s: %s\n", ctl_json_str(v, "qid"), err);
	else
		printf("%s %s\n", ctl_json_str(v, "qid"), ctl_json_str(v, "result"));
}

/* Flattened: "a.b: value" per number or string. */
static void print_flat(const struct ctl_json *v, const char *prefix)
{
	for (int i = 0; v->t == CJ_OBJ && i < v->n; i++) {
		char *name = *prefix ? xasprintf("%s.%s", prefix, v->keys[i]) : xstrdup(v->keys[i]);
		const struct ctl_json *x = &v->items[i];
		if (x->t == CJ_NUM)
			printf("%s: %.0f\n", name, x->num);
		else if (x->t == CJ_STR)
			printf("%s: %s\n", name, x->str);
		else if (x->t == CJ_OBJ)
			print_flat(x, name);
		else if (x->t == CJ_ARR)
			for (int k = 0; k < x->n; k++) {
				const struct ctl_json *e = &x->items[k];
				const char *label = *ctl_json_str(e, "name") ? ctl_json_str(e, "name")
				                                             : ctl_json_str(e, "listen");
				char *sub = xasprintf("%s[%s]", name, label);
				struct ctl_json copy = *e;
				print_flat(&copy, sub);
				free(sub);
			}
		free(name);
	}
}

static void print_stats_line(const struct ctl_json *v, const char *raw, void *arg)
{
	(void)raw;
	(void)arg;
	print_flat(v, "");
}

/* --- passwd --- */

/* Why a user name cannot be an auth_passwords entry (as auth.c), or NULL. */
static const char *bad_user(const char *s)
{
	if (!*s)
		return "empty user name";
	if (strlen(s) > 255)
		return "user name longer than 255 octets";
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == ':' || *s == '#')
			return "space, control character, ':' or '#' in the user name";
	return NULL;
}

/* One line from fd into pw (no newline); -1 at EOF before any byte. */
static int read_pass(int fd, char *pw, size_t size)
{
	size_t n = 0;
	char c;
	ssize_t r;
	while ((r = read(fd, &c, 1)) == 1 && c != '\n') {
		if (n + 1 < size)
			pw[n++] = c;
	}
	if (r <= 0 && n == 0)
		return -1;
	if (n && pw[n - 1] == '\r')
		n--;
	pw[n] = 0;
	return 0;
}

static int prompt_pass(int fd, const char *prompt, char *pw, size_t size)
{
	struct termios old, quiet;
	if (tcgetattr(fd, &old) < 0)
		return -1;
	quiet = old;
	quiet.c_lflag &= (tcflag_t)~ECHO;
	quiet.c_lflag |= ECHONL;
	if (tcsetattr(fd, TCSAFLUSH, &quiet) < 0)
		return -1;
	fputs(prompt, stderr);      /* after echo is off: nothing typed is shown */
	fflush(stderr);
	int r = read_pass(fd, pw, size);
	(void)tcsetattr(fd, TCSAFLUSH, &old);
	return r;
}

/* The file with USER's line replaced (or added), written to a temporary
 * file beside it, synced and renamed over it; the directory synced. */
static void write_passwords(const char *file, const char *user, const char *hash,
                            const char *daemon_user)
{
	struct buf out = {0};
	struct stat st;
	bool exists = stat(file, &st) == 0, replaced = false;
	FILE *f = exists ? fopen(file, "r") : NULL;
	if (exists && !f)
		die(EXIT_PERMISSION, "%s: %s", file, strerror(errno));
	char *line = NULL;
	size_t cap = 0, ulen = strlen(user);
	while (f && getline(&line, &cap, f) >= 0) {
		const char *p = line + strspn(line, " \t");
		if (!strncmp(p, user, ulen) && p[ulen] == ':') {
			if (!replaced)
				buf_addf(&out, "%s:%s\n", user, hash);
			replaced = true;
			continue;
		}
		buf_adds(&out, line);
		if (out.len && out.data[out.len - 1] != '\n')
			buf_adds(&out, "\n");
	}
	if (f)
		fclose(f);
	if (line)
		explicit_bzero(line, cap);
	free(line);
	if (!replaced)
		buf_addf(&out, "%s:%s\n", user, hash);
	char *tmp = xasprintf("%s.petrelctl.XXXXXX", file);
	int fd = mkstemp(tmp);
	if (fd < 0)
		die(errno == EACCES ? EXIT_PERMISSION : EXIT_FAILED, "%s: %s", tmp, strerror(errno));
	/* the new file keeps the old one's owner and mode (e.g. root:petrel
	 * 0640); a first one is root's, readable by the daemon's group, so
	 * that the daemon, running as its user by then, reads it at SIGHUP */
	mode_t mode = exists ? st.st_mode & 07777 : 0640;
	struct passwd *pw = !exists && geteuid() == 0 && daemon_user ? getpwnam(daemon_user) : NULL;
	if ((exists && fchown(fd, st.st_uid, st.st_gid) < 0 && geteuid() == 0) ||
	    (pw && fchown(fd, 0, pw->pw_gid) < 0) || fchmod(fd, mode) < 0 ||
	    write(fd, out.data, out.len) != (ssize_t)out.len || fsync(fd) < 0 || close(fd) < 0 ||
	    rename(tmp, file) < 0) {
		int e = errno;
		unlink(tmp);
		die(EXIT_FAILED, "%s: %s", file, strerror(e));
	}
	char *dcopy = xstrdup(file);
	int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0)
		die(EXIT_FAILED, "%s: the directory could not be synced: %s", file, strerror(errno));
	close(dfd);
	free(dcopy);
	explicit_bzero(out.data, out.len);
	buf_free(&out);
	free(tmp);
}

static int cmd_passwd(struct config *cfg, int argc, char **argv)
{
	if (argc != 1)
		die(EXIT_USAGE, "usage: petrelctl passwd USER");
	const char *why = bad_user(argv[0]);
	if (why)
		die(EXIT_USAGE, "%s: %s", argv[0], why);
	if (!cfg || !cfg->auth_passwords)
		die(EXIT_CONFIG, "%s: auth_passwords is not set", cfg ? cfg->file : "the configuration");
	char pw[1024], again[1024];
	if (isatty(0)) {
		if (prompt_pass(0, "New password: ", pw, sizeof pw) < 0 ||
		    prompt_pass(0, "Again: ", again, sizeof again) < 0)
			die(EXIT_FAILED, "no password read");
		if (strcmp(pw, again)) {
			explicit_bzero(pw, sizeof pw);
			explicit_bzero(again, sizeof again);
			die(EXIT_FAILED, "the passwords differ; nothing changed");
		}
	} else if (read_pass(0, pw, sizeof pw) < 0) {
		die(EXIT_FAILED, "no password on standard input");
	}
	explicit_bzero(again, sizeof again);
	if (!*pw)
		die(EXIT_USAGE, "empty password refused");
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt))
		die(EXIT_FAILED, "crypt_gensalt: yescrypt: %s", strerror(errno));
	struct crypt_data *cd = xcalloc(1, sizeof *cd);
	const char *hash = crypt_r(pw, salt, cd);
	explicit_bzero(pw, sizeof pw);
	if (!hash || hash[0] != '$')
		die(EXIT_FAILED, "crypt: yescrypt failed");
	write_passwords(cfg->auth_passwords, argv[0], hash, cfg->user);
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	printf("%s: password of %s set; petrelctl reload (SIGHUP) makes petreld read it\n",
	       cfg->auth_passwords, argv[0]);
	return 0;
}

/* --- main --- */

static bool qid_args_ok(int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		if (!*argv[i] || strlen(argv[i]) > 64 || strpbrk(argv[i], " \t\r\n"))
			return false;
	return true;
}

int main(int argc, char **argv)
{
	const char *file = NULL, *spool = NULL;
	bool json = false;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-c") && i + 1 < argc)
			file = argv[++i];
		else if (!strcmp(argv[i], "-s") && i + 1 < argc)
			spool = argv[++i];
		else if (!strcmp(argv[i], "--json") || !strcmp(argv[i], "-j"))
			json = true;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[i++];
	int nargs = 0;
	char **args = xcalloc((size_t)(argc - i) + 1, sizeof *args);
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else
			args[nargs++] = argv[i];
	}
	log_open("petrelctl", 1);
	struct config *cfg = NULL;
	char *path;
	if (spool && !file && strcmp(cmd, "passwd")) {
		path = xasprintf("%s/control", spool);
	} else {
		struct buf errs = {0};
		cfg = config_load(file ? file : PETREL_CONF, &errs);
		/* reload of a file with errors: the daemon says what they are,
		 * found through spool and control_socket alone */
		path = cfg ? xstrdup(cfg->control_path) : !strcmp(cmd, "reload")
		       ? config_control_path(file ? file : PETREL_CONF) : NULL;
		if (!path) {
			fputs(errs.data ? errs.data : "", stderr);
			die(EXIT_CONFIG, "%s: the configuration cannot be read%s", file ? file : PETREL_CONF,
			    !strcmp(cmd, "reload") ? " (petreld was not asked: the running configuration "
			    "stays)" : "");
		}
		buf_free(&errs);
	}
	struct conn c = { .fd = -1 };
	struct buf req = {0};
	int rc;
	if (!strcmp(cmd, "passwd")) {
		rc = cmd_passwd(cfg, nargs, args);
		goto done;
	}
	if (!qid_args_ok(nargs, args))
		die(EXIT_USAGE, "bad argument");
	if (!strcmp(cmd, "queue") && nargs == 0) {
		struct totals t = {0};
		conn_open(&c, path);
		if (!json)
			printf("%-21s %9s %-19s  %s\n", "-Queue ID-", "--Size--", "----Arrival Time---",
			       "-Sender/Recipient-------");
		rc = request(&c, "queue\n", json, print_queue_line, &t);
		if (!json && rc == 0) {
			if (t.n)
				printf("-- %llu Kbytes in %d Request%s.\n", (t.bytes + 1023) / 1024, t.n,
				       t.n == 1 ? "" : "s");
			else
				printf("Mail queue is empty\n");
		}
	} else if (!strcmp(cmd, "show") && nargs == 1) {
		conn_open(&c, path);
		buf_addf(&req, "show %s\n", args[0]);
		rc = request(&c, req.data, json, print_show_line, NULL);
	} else if (((!strcmp(cmd, "hold") || !strcmp(cmd, "release") || !strcmp(cmd, "delete")) &&
	            nargs > 0) || !strcmp(cmd, "flush")) {
		/* "<cmd> id...": flush also goes without ids (all of the queue) */
		conn_open(&c, path);
		buf_adds(&req, cmd);
		for (int k = 0; k < nargs; k++)
			buf_addf(&req, " %s", args[k]);
		buf_adds(&req, "\n");
		if (req.len > 4096)
			die(EXIT_USAGE, "too many queue ids for one request (4 KiB); split them");
		rc = request(&c, req.data, json, print_act_line, NULL);
	} else if ((!strcmp(cmd, "requeue") || !strcmp(cmd, "stats")) && nargs == 0) {
		conn_open(&c, path);
		buf_addf(&req, "%s\n", cmd);
		rc = request(&c, req.data, json, !strcmp(cmd, "stats") ? print_stats_line : NULL, NULL);
	} else if (!strcmp(cmd, "reload") && nargs == 0) {
		conn_open(&c, path);
		rc = request(&c, "reload\n", json, print_reload_line, NULL);
	} else {
		usage(stderr);
		rc = EXIT_USAGE;
	}
done:
	if (c.fd >= 0)
		close(c.fd);
	free(c.buf);
	buf_free(&req);
	free(path);
	free(args);
	config_free(&cfg);
	return rc;
}
