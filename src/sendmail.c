/*
 * sendmail.c - petrel-sendmail: the sendmail(1) command line for local
 * programs (cron, scripts, mail(1)), handing mail to the running petreld
 * through its pickup socket.
 *
 * The message is read from stdin first, whole: its header section into
 * memory (bounded), the rest into an unlinked temporary file, lines
 * ending in LF made CRLF.  Only then is the daemon asked, over SMTP on
 * the Unix socket pickup_socket; the daemon knows the caller by the
 * socket's peer credentials, never by anything sent, and writes
 * "Received: by HOST (petrel, from userid N)".  The exit status is 0 only
 * after the daemon answered 250 to the message, which it does once the
 * message is durably in its spool.  Anything else exits non-zero with the
 * sysexits code a caller expects (75 when the daemon is not running: the
 * caller still has the message and may try later) and a line on stderr.
 * A recipient the daemon refuses fails the whole message (nothing is
 * sent to the others: a caller that tries again sends no duplicate).
 *
 * Header work, as Postfix's sendmail and cleanup do for local mail: a
 * leading "From " line is dropped; Bcc: is removed; missing From:, Date:
 * and Message-ID: are added; with -t the recipients are also taken from
 * To:, Cc: and Bcc:.
 */
#include "config.h"
#include "sendmail_parse.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#ifndef PETREL_SYSCONFDIR
#define PETREL_SYSCONFDIR "/etc"
#endif
#ifndef PETREL_SBINDIR
#define PETREL_SBINDIR "/usr/sbin"
#endif

#define HEADER_MAX (1024 * 1024)     /* the header section kept in memory */
#define REPLY_MAX 4096               /* one reply line */
#define IO_TIMEOUT_MS (300 * 1000)   /* RFC 5321 4.5.3.2: minutes, at each step */
#define CHUNK 65536

static const char *prog = "petrel-sendmail";

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: %s [-t] [-i|-oi] [-f SENDER] [-F NAME] [-N DSN] [-R RET] [-V ENVID]\n"
	        "       [-c FILE|-C FILE] [-bm|-bs|-bp|-bi] [-q] [RECIPIENT...]\n"
	        "  -t        recipients from To:, Cc:, Bcc: too (Bcc: is removed)\n"
	        "  -i, -oi   a line with only '.' does not end the message\n"
	        "  -f ADDR   envelope sender (default: LOGIN@ the first local domain)\n"
	        "  -F NAME   full name for an added From:\n"
	        "  -N ...    DSN NOTIFY: never, or success,failure,delay\n"
	        "  -R ...    DSN RET: full or hdrs;  -V ENVID: DSN envelope id\n"
	        "  -c FILE   petrel.conf (default " PETREL_SYSCONFDIR "/petrel/petrel.conf, else the\n"
	        "            embedded default); -C FILE is the same\n"
	        "  -bm       deliver (default);  -bs  SMTP on stdin/stdout;  -bp  the queue\n"
	        "  -bi       newaliases (nothing to do);  -q  retry deferred mail now\n"
	        "Historical flags that need no action (-oem, -odi, -v, -m, ...) are accepted.\n",
	        prog);
	exit(EX_USAGE);
}

/* ---- options ---- */

struct opts {
	bool t, dot_ends, smtp_stdin;
	const char *from, *fullname, *notify, *ret, *envid, *conf;
	char mode;                      /* 'm', 's', 'p', 'i', 'q' */
	char **rcpt_args;
	int nrcpt_args;
};

/* A flag's argument: the rest of the word ("-fuser") or the next word. */
static const char *optarg_of(char **argv, int *i, const char *rest)
{
	if (*rest)
		return rest;
	if (!argv[*i + 1]) {
		say("option %s needs an argument", argv[*i]);
		usage();
	}
	return argv[++*i];
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof *o);
	o->dot_ends = true;
	o->mode = 'm';
	int i = 1;
	for (; i < argc; i++) {
		char *a = argv[i];
		if (a[0] != '-' || !a[1])
			break;
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		char f = a[1];
		const char *rest = a + 2;
		switch (f) {
		case 't': o->t = true; break;
		case 'i': o->dot_ends = false; break;
		case 'f': case 'r': o->from = optarg_of(argv, &i, rest); break;
		case 'F': o->fullname = optarg_of(argv, &i, rest); break;
		case 'N': o->notify = optarg_of(argv, &i, rest); break;
		case 'R': o->ret = optarg_of(argv, &i, rest); break;
		case 'V': o->envid = optarg_of(argv, &i, rest); break;
		case 'c': case 'C': o->conf = optarg_of(argv, &i, rest); break;
		case 'b':
			if (!strcmp(rest, "m") || !strcmp(rest, "s") || !strcmp(rest, "p") ||
			    !strcmp(rest, "i"))
				o->mode = rest[0];
			else if (!strcmp(rest, "d") || !strcmp(rest, "D")) {
				say("-b%s: run petreld to have a daemon", rest);
				exit(EX_USAGE);
			} else {
				say("-b%s: not supported", rest);
				exit(EX_USAGE);
			}
			break;
		case 'o':
			if (!strcmp(rest, "i"))
				o->dot_ends = false;
			/* -oem, -odi, -odb, -oQ..., -om ...: need no action */
			break;
		case 'I': o->mode = 'i'; break;
		case 'q': o->mode = 'q'; break;   /* -q, -q1h: retry now */
		case 'B': case 'h': case 'L': case 'O': case 'X':
			(void)optarg_of(argv, &i, rest);      /* arguments we do not act on */
			break;
		case 'v': case 'm': case 'e': case 'n': case 'U': case 'A': case 'G': case 'd':
			break;
		default:
			say("unknown option -%c", f);
			usage();
		}
	}
	o->rcpt_args = argv + i;
	o->nrcpt_args = argc - i;
}

/* ---- recipients ---- */

struct rcpts {
	char **v;
	int n, cap, limit;
	const char *domain;         /* appended to a bare local part */
	bool overflow, bad;
};

static int rcpt_add(void *arg, const char *addr)
{
	struct rcpts *r = arg;
	char *a = strchr(addr, '@') ? strdup(addr) : xasprintf("%s@%s", addr, r->domain);
	if (!a)
		exit(EX_OSERR);
	for (int i = 0; i < r->n; i++)
		if (!strcasecmp(r->v[i], a)) {     /* once each, as Postfix's cleanup */
			free(a);
			return 0;
		}
	if (r->n >= r->limit) {
		r->overflow = true;
		free(a);
		return 1;
	}
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 16;
		r->v = xrealloc(r->v, (size_t)r->cap * sizeof *r->v);
	}
	r->v[r->n++] = a;
	return 0;
}

static void rcpt_list(struct rcpts *r, const char *s, size_t n, const char *what)
{
	if (sm_addr_list(s, n, rcpt_add, r) < 0 && !r->overflow) {
		say("%s: cannot parse the address list '%.*s'", what, (int)(n > 200 ? 200 : n), s);
		r->bad = true;
	}
}

/* ---- reading the message ---- */

struct msg {
	struct buf head;            /* the header section as it will be sent, CRLF */
	int body_fd;                /* the rest (from the empty line on), CRLF */
	uint64_t size;
	bool eightbit;
	bool has_from, has_date, has_msgid;
};

static void body_write(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			say("cannot keep the message in a temporary file: %s", strerror(errno));
			exit(EX_CANTCREAT);
		}
		p += w;
		n -= (size_t)w;
	}
}

static int tmp_open(void)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		char *p = xasprintf("%s/petrel-sendmail-XXXXXX", dir);
		fd = mkstemp(p);
		if (fd >= 0)
			unlink(p);
		free(p);
	}
	if (fd < 0) {
		say("cannot make a temporary file in %s: %s", dir, strerror(errno));
		exit(EX_CANTCREAT);
	}
	return fd;
}

/* Read stdin: a leading "From " line dropped, LF made CRLF, and (unless
 * -i) a line of one '.' ends it.  Over `limit` bytes: exit 73. */
static void read_message(const struct opts *o, uint64_t limit, struct msg *m)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	bool in_head = true, first = true;
	memset(m, 0, sizeof *m);
	m->body_fd = tmp_open();
	while ((n = getline(&line, &cap, stdin)) > 0) {
		size_t len = (size_t)n;
		bool nl = line[len - 1] == '\n';
		if (nl)
			len--;
		if (len && line[len - 1] == '\r')
			len--;
		if (first && len >= 5 && !memcmp(line, "From ", 5)) {   /* mbox separator */
			first = false;
			continue;
		}
		first = false;
		if (o->dot_ends && len == 1 && line[0] == '.')
			break;
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)line[i] & 0x80) {
				m->eightbit = true;
				break;
			}
		m->size += len + 2;
		if (m->size > limit) {
			say("message too large: more than %llu bytes (message_size_limit); not sent",
			    (unsigned long long)limit);
			exit(EX_CANTCREAT);
		}
		if (in_head) {
			bool cont = line[0] == ' ' || line[0] == '\t';
			if (len == 0)
				in_head = false;            /* the empty line: kept, in the body */
			else if ((cont && m->head.len == 0) ||
			         (!cont && !memchr(line, ':', len))) {
				/* not a header line: the body starts here (as Postfix's
				 * cleanup), after the empty line it needs */
				in_head = false;
				body_write(m->body_fd, "\r\n", 2);
				m->size += 2;
			}
		}
		if (in_head) {
			if (m->head.len + len + 2 > HEADER_MAX) {
				say("header section over %d bytes; not sent", HEADER_MAX);
				exit(EX_DATAERR);
			}
			buf_add(&m->head, line, len);
			buf_add(&m->head, "\r\n", 2);
		} else {
			body_write(m->body_fd, line, len);
			body_write(m->body_fd, "\r\n", 2);
		}
	}
	free(line);
	if (ferror(stdin)) {
		say("cannot read the message: %s", strerror(errno));
		exit(EX_IOERR);
	}
}

/* ---- the header section ---- */

/* Drop Bcc:, note From:/Date:/Message-ID:, and with -t take the
 * recipients of To:, Cc: and Bcc:. */
static void scan_head(const struct opts *o, struct msg *m, struct rcpts *r)
{
	struct buf out = {0};
	const char *h = m->head.data ? m->head.data : "";
	size_t n = m->head.len;
	for (size_t i = 0; i < n;) {
		size_t k = sm_field_end(h + i, n - i), v;
		const char *f = h + i;
		bool keep = true;
		if (sm_field_is(f, k, "bcc", &v)) {
			keep = false;
			if (o->t)
				rcpt_list(r, f + v, k - v, "Bcc:");
		} else if (sm_field_is(f, k, "to", &v) || sm_field_is(f, k, "cc", &v)) {
			if (o->t)
				rcpt_list(r, f + v, k - v, f[0] == 't' || f[0] == 'T' ? "To:" : "Cc:");
		} else if (sm_field_is(f, k, "from", &v))
			m->has_from = true;
		else if (sm_field_is(f, k, "date", &v))
			m->has_date = true;
		else if (sm_field_is(f, k, "message-id", &v))
			m->has_msgid = true;
		if (keep)
			buf_add(&out, f, k);
		i += k;
	}
	buf_free(&m->head);
	m->head = out;
}

static void add_missing(const struct opts *o, struct msg *m, const char *sender,
                        const char *hostname)
{
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	if (!m->has_from) {
		if (o->fullname && *o->fullname && !strpbrk(o->fullname, "\r\n\"\\"))
			buf_addf(&m->head, "From: \"%s\" <%s>\r\n", o->fullname, sender);
		else
			buf_addf(&m->head, "From: %s\r\n", sender);
	}
	if (!m->has_date) {
		char d[64];
		strftime(d, sizeof d, "%a, %d %b %Y %H:%M:%S %z", &tm);
		buf_addf(&m->head, "Date: %s\r\n", d);
	}
	if (!m->has_msgid) {
		char d[32];
		strftime(d, sizeof d, "%Y%m%d%H%M%S", &tm);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		buf_addf(&m->head, "Message-ID: <%s.%ld.%d@%s>\r\n", d, (long)ts.tv_nsec, (int)getpid(),
		         hostname);
	}
}

/* ---- SMTP over the pickup socket ---- */

struct conn {
	int fd;
	char in[REPLY_MAX + 2];
	size_t inlen;
	char reply[REPLY_MAX];      /* the last line of the last reply */
	unsigned caps;
	uint64_t size_limit;
};
#define CAP_CHUNKING 1
#define CAP_8BITMIME 2
#define CAP_SMTPUTF8 4
#define CAP_DSN 8
#define CAP_SIZE 16

static int wait_fd(int fd, short ev)
{
	struct pollfd p = { .fd = fd, .events = ev };
	for (;;) {
		int r = poll(&p, 1, IO_TIMEOUT_MS);
		if (r > 0)
			return 0;
		if (r == 0) {
			say("petreld did not answer for %d s; not sent", IO_TIMEOUT_MS / 1000);
			exit(EX_TEMPFAIL);
		}
		if (errno != EINTR) {
			say("poll: %s", strerror(errno));
			exit(EX_OSERR);
		}
	}
}

static void send_all(struct conn *c, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				wait_fd(c->fd, POLLOUT);
				continue;
			}
			say("lost the connection to petreld: %s; not sent", strerror(errno));
			exit(EX_TEMPFAIL);
		}
		p += w;
		n -= (size_t)w;
	}
}

static void sendf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sendf(struct conn *c, const char *fmt, ...)
{
	char b[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b, sizeof b, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof b) {
		say("a command is too long; not sent");
		exit(EX_DATAERR);
	}
	send_all(c, b, (size_t)n);
}

/* One reply line, without its CRLF, into c->reply; its code, or exit. */
static int read_reply_line(struct conn *c, bool *more)
{
	for (;;) {
		char *nl = memchr(c->in, '\n', c->inlen);
		if (nl) {
			size_t len = (size_t)(nl - c->in);
			size_t keep = len && c->in[len - 1] == '\r' ? len - 1 : len;
			memcpy(c->reply, c->in, keep);
			c->reply[keep] = 0;
			memmove(c->in, nl + 1, c->inlen - len - 1);
			c->inlen -= len + 1;
			if (keep < 3 || c->reply[0] < '2' || c->reply[0] > '5' || c->reply[1] < '0' ||
			    c->reply[1] > '9' || c->reply[2] < '0' || c->reply[2] > '9' ||
			    (keep > 3 && c->reply[3] != ' ' && c->reply[3] != '-')) {
				say("petreld sent something that is not an SMTP reply: '%.80s'", c->reply);
				exit(EX_PROTOCOL);
			}
			*more = keep > 3 && c->reply[3] == '-';
			return (c->reply[0] - '0') * 100 + (c->reply[1] - '0') * 10 + (c->reply[2] - '0');
		}
		if (c->inlen >= REPLY_MAX) {
			say("petreld sent a reply line over %d bytes", REPLY_MAX);
			exit(EX_PROTOCOL);
		}
		wait_fd(c->fd, POLLIN);
		ssize_t r = recv(c->fd, c->in + c->inlen, REPLY_MAX - c->inlen, 0);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0) {
			say("petreld closed the connection%s%s; not sent", r < 0 ? ": " : "",
			    r < 0 ? strerror(errno) : "");
			exit(EX_TEMPFAIL);
		}
		c->inlen += (size_t)r;
	}
}

/* A whole reply; each line goes to fn (EHLO's capabilities). */
static int read_reply(struct conn *c, void (*fn)(struct conn *, const char *))
{
	bool more;
	int code;
	do {
		code = read_reply_line(c, &more);
		if (fn)
			fn(c, c->reply + 4 > c->reply + strlen(c->reply) ? "" : c->reply + 4);
	} while (more);
	return code;
}

static void ehlo_cap(struct conn *c, const char *kw)
{
	if (!strcasecmp(kw, "CHUNKING"))
		c->caps |= CAP_CHUNKING;
	else if (!strcasecmp(kw, "8BITMIME"))
		c->caps |= CAP_8BITMIME;
	else if (!strcasecmp(kw, "SMTPUTF8"))
		c->caps |= CAP_SMTPUTF8;
	else if (!strcasecmp(kw, "DSN"))
		c->caps |= CAP_DSN;
	else if (!strncasecmp(kw, "SIZE", 4) && (kw[4] == ' ' || !kw[4])) {
		c->caps |= CAP_SIZE;
		c->size_limit = strtoull(kw + 4, NULL, 10);
	}
}

/* The exit status for a refusal: 4xx tempfail, 552 / 5.3.4 cannot create,
 * 5xx at RCPT no user, other 5xx data error. */
static int refusal(int code, bool rcpt)
{
	if (code >= 400 && code < 500)
		return EX_TEMPFAIL;
	if (code == 552)
		return EX_CANTCREAT;
	return rcpt ? EX_NOUSER : EX_DATAERR;
}

/* QUIT, and a few seconds for the 221: the outcome is already decided,
 * so whatever comes back (or nothing) changes nothing. */
static void quit(struct conn *c)
{
	if (send(c->fd, "QUIT\r\n", 6, MSG_NOSIGNAL) == 6) {
		char b[512];
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		while (poll(&p, 1, 5000) > 0) {
			ssize_t n = recv(c->fd, b, sizeof b, 0);
			if (n <= 0 || memchr(b, '\n', (size_t)n))
				break;
		}
	}
	close(c->fd);
}

static int pickup_connect(const struct config *cfg)
{
	if (!cfg->pickup_path) {
		say("%s: pickup_socket is \"\": this petreld takes no local mail; not sent", cfg->file);
		exit(EX_UNAVAILABLE);
	}
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", cfg->pickup_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		int e = errno;
		say("cannot reach petreld at %s: %s (is it running?); the message was not sent",
		    cfg->pickup_path, strerror(e));
		exit(e == EACCES || e == EPERM ? EX_NOPERM : EX_TEMPFAIL);
	}
	return fd;
}

/* xtext (RFC 3461 4): '+', '=' and what is not printable ASCII as +XX */
static void xtext(char *out, size_t size, const char *in)
{
	size_t o = 0;
	for (; *in && o + 4 < size; in++) {
		unsigned char ch = (unsigned char)*in;
		if (ch < 33 || ch > 126 || ch == '+' || ch == '=')
			o += (size_t)snprintf(out + o, size - o, "+%02X", ch);
		else
			out[o++] = (char)ch;
	}
	out[o] = 0;
}

static bool is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s & 0x80)
			return false;
	return true;
}

static int submit(const struct config *cfg, const struct opts *o, struct msg *m,
                  const char *sender, struct rcpts *r)
{
	struct conn c = { .fd = pickup_connect(cfg) };
	int code = read_reply(&c, NULL);
	if (code != 220) {
		say("petreld greeted with '%s'; not sent", c.reply);
		quit(&c);
		return refusal(code, false);
	}
	sendf(&c, "EHLO localhost\r\n");
	if ((code = read_reply(&c, ehlo_cap)) != 250) {
		say("EHLO: '%s'; not sent", c.reply);
		quit(&c);
		return refusal(code, false);
	}
	/* the pickup socket is petreld's own and always offers CHUNKING: BDAT
	 * sends the file as it is, with no dot-stuffing and no line to split,
	 * and there is no DATA path to get wrong */
	if (!(c.caps & CAP_CHUNKING)) {
		say("the pickup socket does not offer CHUNKING (not petreld?); not sent");
		quit(&c);
		return EX_PROTOCOL;
	}
	struct stat bst;
	uint64_t total = m->head.len + (fstat(m->body_fd, &bst) == 0 ? (uint64_t)bst.st_size : m->size);
	if ((c.caps & CAP_SIZE) && c.size_limit && total > c.size_limit) {
		say("message too large: %llu bytes, petreld takes %llu at most; not sent",
		    (unsigned long long)total, (unsigned long long)c.size_limit);
		quit(&c);
		return EX_CANTCREAT;
	}
	bool utf8 = !is_ascii(sender);
	for (int i = 0; i < r->n; i++)
		utf8 |= !is_ascii(r->v[i]);
	char params[1200] = "", rparams[600] = "";
	size_t p = 0;
	if (c.caps & CAP_SIZE)
		p += (size_t)snprintf(params + p, sizeof params - p, " SIZE=%llu", (unsigned long long)total);
	if (m->eightbit && (c.caps & CAP_8BITMIME))
		p += (size_t)snprintf(params + p, sizeof params - p, " BODY=8BITMIME");
	if (utf8 && (c.caps & CAP_SMTPUTF8))
		p += (size_t)snprintf(params + p, sizeof params - p, " SMTPUTF8");
	if ((c.caps & CAP_DSN) && o->ret)
		p += (size_t)snprintf(params + p, sizeof params - p, " RET=%s", o->ret);
	if ((c.caps & CAP_DSN) && o->envid) {
		char x[400];
		xtext(x, sizeof x, o->envid);
		p += (size_t)snprintf(params + p, sizeof params - p, " ENVID=%s", x);
	}
	if ((c.caps & CAP_DSN) && o->notify)
		snprintf(rparams, sizeof rparams, " NOTIFY=%s", o->notify);
	sendf(&c, "MAIL FROM:<%s>%s\r\n", sender, params);
	if ((code = read_reply(&c, NULL)) != 250) {
		say("sender <%s>: %s; not sent", sender, c.reply);
		quit(&c);
		return refusal(code, false);
	}
	int worst = 0;
	for (int i = 0; i < r->n; i++) {
		sendf(&c, "RCPT TO:<%s>%s\r\n", r->v[i], rparams);
		if ((code = read_reply(&c, NULL)) / 100 != 2) {
			say("recipient <%s>: %s", r->v[i], c.reply);
			int e = refusal(code, true);
			if (!worst || e == EX_TEMPFAIL)
				worst = e;
		}
	}
	if (worst) {
		say("the message was not sent (to no recipient)");
		quit(&c);
		return worst;
	}
	if (lseek(m->body_fd, 0, SEEK_SET) < 0) {
		say("temporary file: %s", strerror(errno));
		return EX_IOERR;
	}
	char *chunk = xmalloc(CHUNK);
	sendf(&c, "BDAT %zu\r\n", m->head.len);
	send_all(&c, m->head.data ? m->head.data : "", m->head.len);
	if ((code = read_reply(&c, NULL)) != 250)
		goto refused;
	for (;;) {
		ssize_t n = read(m->body_fd, chunk, CHUNK);
		if (n < 0) {
			say("temporary file: %s", strerror(errno));
			free(chunk);
			return EX_IOERR;
		}
		off_t here = lseek(m->body_fd, 0, SEEK_CUR);
		struct stat st;
		bool last = n == 0 || (fstat(m->body_fd, &st) == 0 && here >= st.st_size);
		sendf(&c, "BDAT %zd%s\r\n", n, last ? " LAST" : "");
		send_all(&c, chunk, (size_t)n);
		if ((code = read_reply(&c, NULL)) != 250)
			goto refused;
		if (last)
			break;
	}
	free(chunk);
	quit(&c);
	return 0;
refused:
	free(chunk);
	say("the message was refused: %s", c.reply);
	quit(&c);
	return refusal(code, false);
}

/* -bs: the caller speaks SMTP; bytes are passed both ways, a bare LF from
 * the caller made CRLF (the daemon is strict about line ends).  A caller
 * that writes a whole session at once (a script) would send the message
 * before the 354 the daemon insists on (RFC 2920: DATA ends a pipelined
 * group): after a DATA line the caller's input waits for the reply. */
struct bs {
	struct conn c;
	struct buf pend;            /* caller's input not yet sent */
	bool eof, waiting, in_data;
	unsigned long asked;        /* replies due: the greeting, each command, each message */
	unsigned long answered;     /* final reply lines seen */
	char rline[8];              /* the start of the server's current line */
	size_t rlen;
};

static void bs_server_bytes(struct bs *b, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			if (b->rlen >= 4 && b->rline[3] == ' ' && ++b->answered == b->asked &&
			    b->waiting) {
				/* the reply to the DATA itself */
				b->waiting = false;
				b->in_data = !memcmp(b->rline, "354", 3);
			}
			b->rlen = 0;
		} else if (b->rlen < sizeof b->rline)
			b->rline[b->rlen++] = p[i];
	}
}

/* Send the pending complete lines (all of it at EOF) until a DATA. */
static void bs_pump(struct bs *b)
{
	size_t off = 0;
	while (!b->waiting && off < b->pend.len) {
		const char *l = b->pend.data + off;
		const char *nl = memchr(l, '\n', b->pend.len - off);
		if (!nl && !b->eof && b->pend.len - off < CHUNK)
			break;
		size_t k = nl ? (size_t)(nl - l) + 1 : b->pend.len - off;
		size_t body = k - (nl ? 1 : 0);
		if (body && l[body - 1] == '\r')
			body--;
		if (b->in_data) {
			if (body == 1 && l[0] == '.') {
				b->in_data = false;
				b->asked++;     /* the message's reply */
			}
		} else {
			b->asked++;
			if (body >= 4 && !strncasecmp(l, "DATA", 4) && (body == 4 || l[4] == ' '))
				b->waiting = true;
		}
		send_all(&b->c, l, body);
		if (nl)
			send_all(&b->c, "\r\n", 2);
		off += k;
	}
	memmove(b->pend.data, b->pend.data + off, b->pend.len - off);
	b->pend.len -= off;
}

static int smtp_stdin(const struct config *cfg)
{
	struct bs b = { .c.fd = pickup_connect(cfg), .asked = 1 };
	char buf[CHUNK];
	for (;;) {
		bool want_in = !b.eof && !b.waiting && b.pend.len < 4 * CHUNK;
		struct pollfd p[2] = { { .fd = b.c.fd, .events = POLLIN }, { .fd = 0, .events = POLLIN } };
		if (poll(p, want_in ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return EX_OSERR;
		}
		if (p[0].revents) {
			ssize_t n = recv(b.c.fd, buf, sizeof buf, 0);
			if (n <= 0)
				break;
			bs_server_bytes(&b, buf, (size_t)n);
			for (ssize_t k = 0; k < n;) {
				ssize_t w = write(1, buf + k, (size_t)(n - k));
				if (w <= 0)
					return EX_IOERR;
				k += w;
			}
		}
		if (want_in && p[1].revents) {
			ssize_t n = read(0, buf, sizeof buf);
			if (n <= 0)
				b.eof = true;
			else
				buf_add(&b.pend, buf, (size_t)n);
		}
		bs_pump(&b);
		/* the caller is done and every reply it asked for came: close
		 * (no half-close: the daemon would take it for a lost client
		 * before its last replies are out) */
		if (b.eof && !b.pend.len && b.answered >= b.asked)
			break;
	}
	buf_free(&b.pend);
	close(b.c.fd);
	return 0;
}

/* ---- main ---- */

static const char *login_name(void)
{
	struct passwd *pw = getpwuid(getuid());
	if (pw && pw->pw_name && *pw->pw_name)
		return pw->pw_name;
	static char uid[32];
	snprintf(uid, sizeof uid, "uid%u", (unsigned)getuid());
	return uid;
}

/* The domain for the caller's own address and for a bare local part: the
 * hostname when it is a local domain, else the first local domain. */
static const char *own_domain(const struct config *cfg)
{
	if (config_is_local_domain(cfg, cfg->hostname) || cfg->ndomains == 0)
		return cfg->hostname;
	return cfg->domains[0];
}

static void run_petrelctl(const char *conf, const char *cmd)
{
	const char *ctl = getenv("PETRELCTL");
	if (!ctl || !*ctl)
		ctl = PETREL_SBINDIR "/petrelctl";
	if (conf)
		execl(ctl, "petrelctl", "-c", conf, cmd, (char *)NULL);
	else
		execl(ctl, "petrelctl", cmd, (char *)NULL);
	say("cannot run %s: %s", ctl, strerror(errno));
	exit(EX_UNAVAILABLE);
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	struct opts o;
	parse_opts(argc, argv, &o);
	if (!strcmp(base, "mailq"))
		o.mode = 'p';
	else if (!strcmp(base, "newaliases"))
		o.mode = 'i';
	if (o.mode == 'i') {
		fprintf(stderr, "%s: petrel keeps its aliases in petrel.conf: nothing to rebuild\n", prog);
		return 0;
	}
	const char *path = o.conf;
	if (!path && access(PETREL_SYSCONFDIR "/petrel/petrel.conf", F_OK) == 0)
		path = PETREL_SYSCONFDIR "/petrel/petrel.conf";
	if (o.mode == 'p')
		run_petrelctl(path, "queue");
	if (o.mode == 'q')
		run_petrelctl(path, "flush");
	struct buf errs = {0};
	struct config *cfg = config_load(path, &errs);
	if (!cfg) {
		fputs(errs.data ? errs.data : "configuration error\n", stderr);
		return EX_CONFIG;
	}
	int st;
	char *sender = NULL;
	struct rcpts r = { .limit = cfg->recipient_limit };
	struct msg m = { .body_fd = -1 };
	if (o.mode == 's') {
		st = smtp_stdin(cfg);
		goto out;
	}
	const char *domain = own_domain(cfg);
	r.domain = domain;
	if (o.from) {
		const char *f = o.from;
		size_t n = strlen(f);
		if (n >= 2 && f[0] == '<' && f[n - 1] == '>') {
			f++;
			n -= 2;
		}
		if (n >= SM_ADDR_MAX || memchr(f, '\r', n) || memchr(f, '\n', n) || memchr(f, '<', n) ||
		    memchr(f, '>', n)) {
			say("-f: not an address: '%s'", o.from);
			st = EX_USAGE;
			goto out;
		}
		sender = n == 0 ? xstrdup("") : memchr(f, '@', n) ? xasprintf("%.*s", (int)n, f)
		         : xasprintf("%.*s@%s", (int)n, f, domain);
	} else
		sender = xasprintf("%s@%s", login_name(), domain);
	for (int i = 0; i < o.nrcpt_args; i++)
		rcpt_list(&r, o.rcpt_args[i], strlen(o.rcpt_args[i]), "recipient");
	read_message(&o, cfg->message_size_limit, &m);
	scan_head(&o, &m, &r);
	if (r.bad) {
		st = EX_DATAERR;
		goto out;
	}
	if (r.overflow) {
		say("more than %d recipients (recipient_limit); not sent", r.limit);
		st = EX_DATAERR;
		goto out;
	}
	if (r.n == 0) {
		say(o.t ? "no recipient in the command line or in To:, Cc:, Bcc:; not sent"
		        : "no recipient given (name them, or use -t); not sent");
		st = EX_USAGE;
		goto out;
	}
	add_missing(&o, &m, *sender ? sender : "MAILER-DAEMON", cfg->hostname);
	st = submit(cfg, &o, &m, sender, &r);
out:
	if (m.body_fd >= 0)
		close(m.body_fd);
	buf_free(&m.head);
	for (int i = 0; i < r.n; i++)
		free(r.v[i]);
	free(r.v);
	free(sender);
	config_free(&cfg);
	buf_free(&errs);
	return st;
}
