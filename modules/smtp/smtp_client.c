/*
 * smtp_client.c - one outbound SMTP connection: a non-blocking client
 * state machine on the event loop (RFC 5321, 3207, 2920, 1870, 6152,
 * 6531, 3461, 4954).
 *
 * A connection walks its destination's targets (MX hosts, then their
 * addresses) until one gives a usable session: connect, greeting, EHLO
 * (HELO if EHLO is refused), STARTTLS by policy and EHLO again, AUTH when
 * credentials are set (only under TLS).  A refused connection, a
 * timeout, a 4xx/5xx greeting or a failed TLS handshake moves on to the
 * next target (under tls = "may" a failed STARTTLS handshake is first
 * retried once at the same address in clear, as Postfix does); when none
 * is left the owner hears failed().  Once a
 * session is up the connection asks its owner for jobs (want_job), runs
 * each transaction (pipelined when offered), reports every recipient,
 * sends RSET and asks again, so idle connections are reused (with
 * PIPELINING the RSET goes in one group with the next MAIL).
 *
 * Replies are read line by line into a fixed buffer and parsed by
 * smtp_syntax.c: a line longer than SMTP_LINE_MAX, more than
 * SMTP_REPLY_LINES lines, a NUL byte or a bare LF end the session with a
 * deferral ("malformed reply"); every step has its own
 * deadline (RFC 5321 4.5.3.2), counted for the whole reply so a reply
 * that never ends times out.  Memory per connection is the fixed input
 * buffer plus an output buffer bounded by one body chunk and the
 * commands of one transaction.
 *
 * After STARTTLS everything learnt before the handshake is forgotten:
 * unread input is dropped and EHLO is sent again.
 */
#include "smtp_int.h"
#include "smtp_syntax.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define IN_SIZE 4608
#define BODY_CHUNK 16384
#define OUT_HIGH (2 * BODY_CHUNK)

enum state {
	S_CONNECT, S_TLS_HS, S_GREETING, S_EHLO, S_HELO, S_STARTTLS,
	S_AUTH, S_AUTH_USER, S_AUTH_PASS, S_IDLE, S_RSET, S_TXN, S_BODY, S_DOT, S_QUIT,
};

static const char *const state_name[] = {
	[S_CONNECT] = "connect", [S_TLS_HS] = "TLS handshake", [S_GREETING] = "greeting",
	[S_EHLO] = "EHLO", [S_HELO] = "HELO", [S_STARTTLS] = "STARTTLS", [S_AUTH] = "AUTH",
	[S_AUTH_USER] = "AUTH", [S_AUTH_PASS] = "AUTH", [S_IDLE] = "idle", [S_RSET] = "RSET",
	[S_TXN] = "MAIL/RCPT/DATA", [S_BODY] = "message content", [S_DOT] = "end of data",
	[S_QUIT] = "QUIT",
};

struct smtp_conn {
	struct smtp *m;
	struct smtp_conn *prev, *next;      /* m->conns */
	const struct smtp_conn_ops *ops;
	void *arg;
	struct smtp_conn_params p;
	int ti;                             /* target being tried */
	int ntry;                           /* targets that may be tried (not this host) */
	int fd;
	SSL *ssl;
	int ssl_want_write;
	int tls_on;                         /* the session runs under TLS */
	int clear_ti;                       /* target whose TLS handshake failed under
	                                     * "may": its retry goes in clear (-1: none) */
	int helo_done_tls;                  /* STARTTLS was done on this target */
	enum state st;
	unsigned long long deadline;        /* 0: none */
	char in[IN_SIZE];
	size_t inlen;
	/* the reply being read (smtp_syntax.c), and the last complete one */
	struct smtp_reply reply;
	int rcode;
	char rtext[420];
	unsigned caps;
	unsigned long long size_limit;
	/* output */
	char *out;
	size_t outlen, outoff, outcap;
	/* the transaction */
	struct smtp_job *job;
	int ncmd, sent, got;                /* commands: MAIL, RCPT x n, DATA */
	int naccepted;
	int mail_failed;                    /* reply class of a refused MAIL */
	char mail_reply[420];
	int abort_data;                     /* 354 with no recipient: send "." */
	int dot_next;                       /* LMTP: the recipient the next reply to
	                                     * the dot is for (after the accepted) */
	int bol, body_eof;
	int rset_due;                       /* RSET before the next MAIL (pipelined) */
	int rset_reply;                     /* the next reply in S_TXN is RSET's */
	int nmsgs;
	int up;                             /* a session was established */
	unsigned long long idle_since;
	char lasterr[400];
	char lastat[340];                   /* the server lasterr came from, "" for none */
	char peer[340];                     /* "name[ip]:port" */
};

static int conn_try(struct smtp_conn *c);
static int session_up(struct smtp_conn *c);
static int do_flush(struct smtp_conn *c);
static void conn_io(int fd, int events, void *arg);

struct smtp_conn *smtp_conn_next(const struct smtp_conn *c) { return c->next; }
void *smtp_conn_owner(const struct smtp_conn *c) { return c->arg; }
const char *smtp_conn_failed_at(const struct smtp_conn *c) { return c->lastat; }
int smtp_conn_idle(const struct smtp_conn *c) { return c->st == S_IDLE && !c->job; }
unsigned long long smtp_conn_idle_since(const struct smtp_conn *c) { return c->idle_since; }

static const struct smtp_target *target(const struct smtp_conn *c) { return &c->p.targets[c->ti]; }

static void set_deadline(struct smtp_conn *c, unsigned long long ms)
{
	c->deadline = ms ? smtp_now() + ms : 0;
}

/* --- output --- */

static void out_reserve(struct smtp_conn *c, size_t n)
{
	if (c->outoff && c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->outlen + n <= c->outcap)
		return;
	if (c->outoff) {
		memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
		c->outlen -= c->outoff;
		c->outoff = 0;
		if (c->outlen + n <= c->outcap)
			return;
	}
	size_t cap = c->outcap ? c->outcap : 1024;
	while (cap < c->outlen + n)
		cap *= 2;
	char *p = realloc(c->out, cap);
	if (!p)
		abort();    /* allocation wrappers never return NULL */
	c->out = p;
	c->outcap = cap;
}

static void cmd(struct smtp_conn *c, const char *fmt, ...) PETREL_PRINTF(2, 3);
static void cmd(struct smtp_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	out_reserve(c, (size_t)n + 3);
	va_start(ap, fmt);
	vsnprintf(c->out + c->outlen, (size_t)n + 1, fmt, ap);
	va_end(ap);
	c->outlen += (size_t)n;
	memcpy(c->out + c->outlen, "\r\n", 2);
	c->outlen += 2;
}

static void watch(struct smtp_conn *c)
{
	int ev = PETREL_FD_READ;
	if (c->st == S_CONNECT || c->outoff < c->outlen || c->ssl_want_write)
		ev |= PETREL_FD_WRITE;
	if (c->m->host->fd_watch(c->m->self, c->fd, ev, conn_io, c) < 0)
		c->m->host->log(PETREL_LOG_WARN, "%s: cannot watch the socket to %s", c->m->name, c->peer);
}

/* --- closing --- */

static void close_fd(struct smtp_conn *c)
{
	if (c->fd >= 0) {
		c->m->host->fd_watch(c->m->self, c->fd, 0, NULL, NULL);
		if (c->ssl) {
			SSL_free(c->ssl);
			c->ssl = NULL;
		}
		close(c->fd);
		c->fd = -1;
	}
	c->tls_on = 0;
	c->ssl_want_write = 0;
	c->inlen = c->outlen = c->outoff = 0;
	memset(&c->reply, 0, sizeof c->reply);   /* a half-read reply ends with its socket */
	c->caps = 0;
	c->deadline = 0;
}

static void conn_free(struct smtp_conn *c)
{
	close_fd(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->m->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c->out);
	free(c);
}

/* Report every open recipient of the job and hand it back. */
static void job_end(struct smtp_conn *c, int result, const char *reply)
{
	struct smtp_job *j = c->job;
	if (!j)
		return;
	if (reply)
		smtp_job_result_all(c->m, j, result, reply);
	c->job = NULL;
	c->ops->job_done(c, j, c->arg);
}

/* The session is over: the job deferred with why, the owner told. */
static void conn_drop(struct smtp_conn *c, const char *why)
{
	const struct petrel_host *h = c->m->host;
	if (c->job) {
		if (c->st == S_DOT && !c->abort_data) {
			h->log(PETREL_LOG_WARN, "%s: %s: %s after the end of data; the message may have "
			       "been delivered and will be sent again (duplicate risk)", c->m->name,
			       h->delivery_qid(c->job->d), c->peer);
		}
		char r[512];
		snprintf(r, sizeof r, "%s%s", why,
		         c->st == S_DOT && !c->abort_data ? " after end of data (the message may have been delivered)" : "");
		job_end(c, PETREL_DEFER, r);
	}
	c->ops->closed(c, c->arg);
	conn_free(c);
}

/* Leaving a server that answered (a refused login, TLS it does not
 * offer, a 4xx greeting): say QUIT without waiting for the reply, as
 * Postfix does (smtp_skip_quit_response), so its log shows a client that
 * left, not a lost connection.  Best effort: only when nothing else is
 * waiting to be written, never in the middle of a TLS handshake. */
static void quit_nowait(struct smtp_conn *c)
{
	static const char q[] = "QUIT\r\n";
	if (c->fd < 0 || c->st == S_CONNECT || c->st == S_TLS_HS || c->outoff < c->outlen)
		return;
	if (c->tls_on) {
		ERR_clear_error();
		(void)SSL_write(c->ssl, q, (int)sizeof q - 1);
	} else {
		(void)send(c->fd, q, sizeof q - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
}

/* The current target cannot be used: note why, try the next one.
 * Returns -1 (c may be gone). */
static int target_fail(struct smtp_conn *c, const char *fmt, ...) PETREL_PRINTF(2, 3);
static int target_fail(struct smtp_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->lasterr, sizeof c->lasterr, fmt, ap);
	va_end(ap);
	/* a connect that failed reached nobody; anything later came from the peer */
	snprintf(c->lastat, sizeof c->lastat, "%s", c->st == S_CONNECT ? "" : c->peer);
	if (c->up) {
		/* a reused session broke: the job is deferred, the owner opens anew */
		conn_drop(c, c->lasterr);
		return -1;
	}
	c->m->host->log(PETREL_LOG_INFO, "%s: %s", c->m->name, c->lasterr + (strlen(c->lasterr) > 10 ? 10 : 0));
	quit_nowait(c);
	close_fd(c);
	c->ti++;
	conn_try(c);
	return -1;
}

/* A session error (the peer misbehaved, timed out or went away). */
static int session_error(struct smtp_conn *c, const char *fmt, ...) PETREL_PRINTF(2, 3);
static int session_error(struct smtp_conn *c, const char *fmt, ...)
{
	char why[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (!c->up && !c->job)
		return target_fail(c, "%s", why);
	if (c->st != S_QUIT && c->st != S_IDLE)
		c->m->host->log(PETREL_LOG_INFO, "%s: %s%s%s", c->m->name, c->job ? c->m->host->delivery_qid(c->job->d) : "",
		                c->job ? ": " : "", why + (strlen(why) > 10 ? 10 : 0));
	conn_drop(c, why);
	return -1;
}

void smtp_conn_abort(struct smtp_conn *c, const char *why)
{
	conn_drop(c, why);
}

/* --- connecting --- */

static int conn_try(struct smtp_conn *c)
{
	const struct petrel_host *h = c->m->host;
	for (; c->ti < c->ntry; c->ti++) {
		const struct smtp_target *t = target(c);
		if (t->sa.ss_family == AF_UNIX)
			snprintf(c->peer, sizeof c->peer, "unix:%s", t->name);
		else
			snprintf(c->peer, sizeof c->peer, "%s[%s]:%d", t->name, t->ip, t->port);
		c->fd = socket(t->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->fd < 0) {
			c->lastat[0] = 0;
			snprintf(c->lasterr, sizeof c->lasterr, "451 4.4.1 socket for %s: %s", c->peer,
			         strerror(errno));
			continue;
		}
		if (connect(c->fd, (struct sockaddr *)&t->sa, t->salen) < 0 && errno != EINPROGRESS) {
			c->lastat[0] = 0;
			snprintf(c->lasterr, sizeof c->lasterr, "451 4.4.1 connect to %s: %s", c->peer,
			         strerror(errno));
			h->log(PETREL_LOG_INFO, "%s: %s", c->m->name, c->lasterr + 10);
			close(c->fd);
			c->fd = -1;
			continue;
		}
		c->st = S_CONNECT;
		c->helo_done_tls = 0;
		set_deadline(c, c->m->to.connect);
		watch(c);
		return 0;
	}
	/* no target left */
	c->ops->failed(c, c->lasterr, 0, c->arg);
	conn_free(c);
	return -1;
}

struct smtp_conn *smtp_conn_new(struct smtp *m, const struct smtp_conn_params *p,
                                const struct smtp_conn_ops *ops, void *arg)
{
	struct smtp_conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->m = m;
	c->p = *p;
	c->ops = ops;
	c->arg = arg;
	c->fd = -1;
	c->clear_ti = -1;
	snprintf(c->lasterr, sizeof c->lasterr, "451 4.4.1 no address to connect to");
	c->next = m->conns;
	if (m->conns)
		m->conns->prev = c;
	m->conns = c;
	smtp_tick_arm(m);
	return c;
}

/* RFC 5321 5.1: a client that finds itself among the MX hosts discards
 * itself and every host of the same or a greater preference (the
 * targets come in preference order).  Returns how many may be tried,
 * and the first one that is this host in *own (-1: none). */
static int targets_before_me(struct smtp_conn *c, int *own)
{
	int n = c->p.ntargets;
	*own = -1;
	for (int i = 0; i < c->p.ntargets; i++) {
		const struct smtp_target *t = &c->p.targets[i];
		if (!c->m->host->is_own_address(t->ip, t->port))
			continue;
		int k = 0;
		while (k < c->p.ntargets && c->p.targets[k].pref < t->pref)
			k++;
		if (*own < 0)
			*own = i;
		if (k < n)
			n = k;
	}
	return n;
}

void smtp_conn_go(struct smtp_conn *c)
{
	int own;
	c->ntry = targets_before_me(c, &own);
	if (c->ntry == 0 && own >= 0) {
		/* the best MX (or the relay host) is this host: a loop, not a
		 * deferral, and a backup MX must not get it either */
		const struct smtp_target *t = &c->p.targets[own];
		snprintf(c->lasterr, sizeof c->lasterr, "550 5.4.6 %s[%s]:%d is this host", t->name, t->ip,
		         t->port);
		c->ops->failed(c, c->lasterr, 1, c->arg);
		conn_free(c);
		return;
	}
	conn_try(c);
}

/* EHLO, or LHLO for LMTP (RFC 2033 4.1).  Returns 0. */
static int send_ehlo(struct smtp_conn *c)
{
	c->st = S_EHLO;
	cmd(c, "%s %s", c->m->lmtp ? "LHLO" : "EHLO", c->m->hostname);
	set_deadline(c, c->m->to.helo);
	return 0;
}

/* --- TLS --- */

static int tls_start(struct smtp_conn *c)
{
	const struct smtp_target *t = target(c);
	c->ssl = SSL_new(c->m->ssl_ctx);
	if (!c->ssl || !SSL_set_fd(c->ssl, c->fd))
		return target_fail(c, "451 4.7.5 TLS setup for %s failed", c->peer);
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (t->name[0] && strcmp(t->name, t->ip)) {
		SSL_set_tlsext_host_name(c->ssl, t->name);
		SSL_set1_host(c->ssl, t->name);
	} else {
		SSL_set1_host(c->ssl, t->ip);
	}
	/* input read before the handshake is dropped by process_input(),
	 * which sees how much of it followed the 220 and logs it */
	c->st = S_TLS_HS;
	set_deadline(c, c->m->to.starttls);
	return 0;
}

/* A failed handshake under "may" (STARTTLS, not implicit TLS): connect
 * to the same address again and stay in clear there, as Postfix's "may"
 * does; sending in clear is what the policy allows, and a server whose
 * TLS is broken would otherwise defer its mail until it expires.
 * Returns -1 (c is connecting anew, or gone). */
static int tls_retry_clear(struct smtp_conn *c, const char *why)
{
	c->m->host->log(PETREL_LOG_INFO, "%s: TLS handshake with %s failed: %s; trying again "
	                "without TLS (tls = \"may\")", c->m->name, c->peer, why);
	close_fd(c);
	c->clear_ti = c->ti;
	conn_try(c);
	return -1;
}

static int tls_step(struct smtp_conn *c)
{
	ERR_clear_error();
	int r = SSL_connect(c->ssl);
	if (r != 1) {
		int e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			c->ssl_want_write = e == SSL_ERROR_WANT_WRITE;
			return 0;
		}
		unsigned long err = ERR_peek_error();
		char buf[200] = "connection closed";
		if (err)
			ERR_error_string_n(err, buf, sizeof buf);
		long vr = SSL_get_verify_result(c->ssl);
		if (vr != X509_V_OK && c->p.tls == TLS_VERIFY)
			return target_fail(c, "451 4.7.5 TLS with %s: certificate verification failed: %s",
			                   c->peer, X509_verify_cert_error_string(vr));
		if (c->p.tls == TLS_MAY && !c->p.implicit_tls && c->clear_ti != c->ti)
			return tls_retry_clear(c, buf);
		return target_fail(c, "451 4.7.5 TLS handshake with %s failed: %s", c->peer, buf);
	}
	c->ssl_want_write = 0;
	if (c->p.tls == TLS_VERIFY) {
		long vr = SSL_get_verify_result(c->ssl);
		X509 *cert = SSL_get1_peer_certificate(c->ssl);
		X509_free(cert);
		if (!cert)
			return target_fail(c, "451 4.7.5 TLS with %s: the server sent no certificate", c->peer);
		if (vr != X509_V_OK)
			return target_fail(c, "451 4.7.5 TLS with %s: certificate verification failed: %s",
			                   c->peer, X509_verify_cert_error_string(vr));
	}
	c->tls_on = 1;
	c->m->host->log(PETREL_LOG_INFO, "%s: TLS with %s: %s %s%s", c->m->name, c->peer, SSL_get_version(c->ssl),
	                SSL_get_cipher_name(c->ssl), c->p.tls == TLS_VERIFY ? ", verified" : "");
	if (c->p.implicit_tls) {
		c->st = S_GREETING;
		set_deadline(c, c->m->to.greeting);
		return 0;
	}
	/* RFC 3207 4.2: forget what the server said before; ask again */
	c->caps = 0;
	c->helo_done_tls = 1;
	return send_ehlo(c);
}

/* --- transactions --- */

static void xtext(char *out, size_t size, const char *s)
{
	size_t k = 0;
	for (; *s && k + 4 < size; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch >= '!' && ch <= '~' && ch != '+' && ch != '=')
			out[k++] = (char)ch;
		else
			k += (size_t)snprintf(out + k, size - k, "+%02X", ch);
	}
	out[k] = 0;
}

static void send_rcpt(struct smtp_conn *c, int i)
{
	const struct petrel_host *h = c->m->host;
	petrel_delivery *d = c->job->d;
	char params[700] = "";
	if (c->caps & CAP_DSN) {
		/* LMTP: the reports are ours (the server delivers, it does not
		 * relay), so NOTIFY stays here; ORCPT still tells the original
		 * address */
		unsigned n = c->m->lmtp ? 0 : h->delivery_rcpt_notify(d, i);
		size_t k = 0;
		if (n) {
			k += (size_t)snprintf(params + k, sizeof params - k, " NOTIFY=");
			if (n & PETREL_NOTIFY_NEVER)
				k += (size_t)snprintf(params + k, sizeof params - k, "NEVER");
			else
				k += (size_t)snprintf(params + k, sizeof params - k, "%s%s%s",
				                      n & PETREL_NOTIFY_SUCCESS ? "SUCCESS," : "",
				                      n & PETREL_NOTIFY_FAILURE ? "FAILURE," : "",
				                      n & PETREL_NOTIFY_DELAY ? "DELAY," : "");
			if (params[k - 1] == ',')
				params[--k] = 0;
		}
		const char *o = h->delivery_rcpt_orcpt(d, i);
		const char *semi = o ? strchr(o, ';') : NULL;
		if (semi && k + 20 < sizeof params) {
			char x[600];
			xtext(x, sizeof x, semi + 1);
			snprintf(params + k, sizeof params - k, " ORCPT=%.*s;%s", (int)(semi - o), o, x);
		}
	}
	cmd(c, "RCPT TO:<%s>%s", h->delivery_rcpt(d, i), params);
}

static void send_next(struct smtp_conn *c)
{
	const struct petrel_host *h = c->m->host;
	petrel_delivery *d = c->job->d;
	int n = c->job->nrcpt;
	while (c->sent < c->ncmd) {
		int k = c->sent++;
		if (k == 0) {
			char params[600] = "";
			size_t p = 0;
			unsigned f = h->delivery_flags(d);
			if (c->caps & CAP_SIZE)
				p += (size_t)snprintf(params + p, sizeof params - p, " SIZE=%llu", h->delivery_size(d));
			if ((f & PETREL_DLV_8BITMIME) && (c->caps & CAP_8BITMIME))
				p += (size_t)snprintf(params + p, sizeof params - p, " BODY=8BITMIME");
			if ((f & PETREL_DLV_SMTPUTF8) && (c->caps & CAP_SMTPUTF8))
				p += (size_t)snprintf(params + p, sizeof params - p, " SMTPUTF8");
			if ((c->caps & CAP_DSN) && !c->m->lmtp) {
				if (f & (PETREL_DLV_RET_FULL | PETREL_DLV_RET_HDRS))
					p += (size_t)snprintf(params + p, sizeof params - p, " RET=%s",
					                      f & PETREL_DLV_RET_FULL ? "FULL" : "HDRS");
				const char *envid = h->delivery_envid(d);
				if (envid && *envid) {
					char x[400];
					xtext(x, sizeof x, envid);
					snprintf(params + p, sizeof params - p, " ENVID=%s", x);
				}
			}
			cmd(c, "MAIL FROM:<%s>%s", h->delivery_sender(d), params);
			set_deadline(c, c->m->to.mail);
		} else if (k <= n) {
			send_rcpt(c, k - 1);
			set_deadline(c, c->m->to.rcpt);
		} else {
			cmd(c, "DATA");
			set_deadline(c, c->m->to.data_init);
		}
		if (!(c->caps & CAP_PIPELINING))
			break;
	}
}

/* Does the message hold a byte with the high bit set: anywhere, or
 * (headers) in its header section only?  One read pass, rewound after;
 * only for a message flagged 8BITMIME or SMTPUTF8 going to a server
 * without the extension.  -1: the queued message cannot be read. */
static int has_8bit(struct smtp_conn *c, petrel_delivery *d, int headers)
{
	const struct petrel_host *h = c->m->host;
	char buf[16384];
	int found = 0, done = 0, nl = 0;     /* nl: line ends in a row, CR aside */
	if (h->delivery_rewind(d) < 0)
		return -1;
	while (!found && !done) {
		ssize_t r = h->delivery_read(d, buf, sizeof buf);
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r && !found && !done; i++) {
			unsigned char ch = (unsigned char)buf[i];
			found = ch >= 0x80;
			if (ch == '\n')
				done = headers && ++nl == 2;
			else if (ch != '\r')
				nl = 0;
		}
	}
	return h->delivery_rewind(d) < 0 ? -1 : found;
}

static int is_8bit(const char *s)
{
	for (; s && *s; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

/* Does the job need SMTPUTF8 (RFC 6531 3.2): a UTF-8 address in its
 * envelope or UTF-8 in the message's header section?  A message whose
 * client merely asked for SMTPUTF8 may go to a server without it. */
static int needs_smtputf8(struct smtp_conn *c, struct smtp_job *j)
{
	const struct petrel_host *h = c->m->host;
	if (is_8bit(h->delivery_sender(j->d)))
		return 1;
	for (int i = 0; i < j->nrcpt; i++)
		if (is_8bit(h->delivery_rcpt(j->d, i)))
			return 1;
	return has_8bit(c, j->d, 1);
}

/* Start the job the connection holds; returns 0, 1 when the job ended
 * before anything was sent (the next one may go), or -1 (c gone). */
static int txn_begin(struct smtp_conn *c)
{
	const struct petrel_host *h = c->m->host;
	struct smtp_job *j = c->job;
	petrel_delivery *d = j->d;
	unsigned f = h->delivery_flags(d);
	snprintf(j->relay, sizeof j->relay, "%s", c->peer);
	h->delivery_relay(d, c->peer);
	j->tries++;
	c->nmsgs++;
	char r[500];
	if ((c->caps & CAP_SIZE) && c->size_limit && h->delivery_size(d) > c->size_limit) {
		snprintf(r, sizeof r, "552 5.3.4 message size %llu exceeds the limit %llu of %s",
		         h->delivery_size(d), c->size_limit, c->peer);
		job_end(c, PETREL_BOUNCE, r);
		return 1;
	}
	if ((f & PETREL_DLV_SMTPUTF8) && !(c->caps & CAP_SMTPUTF8)) {
		int e = needs_smtputf8(c, j);
		if (e != 0) {
			if (e > 0)
				snprintf(r, sizeof r, "553 5.6.7 the message needs SMTPUTF8 and %s does not offer it",
				         c->peer);
			job_end(c, e > 0 ? PETREL_BOUNCE : PETREL_DEFER,
			        e > 0 ? r : "451 4.3.0 cannot read the queued message");
			return 1;
		}
	}
	if ((f & PETREL_DLV_8BITMIME) && !(c->caps & CAP_8BITMIME)) {
		/* RFC 6152 3: convert to 7 bit or return it; we return 8-bit
		 * content and send a message whose bytes are all 7-bit as it is */
		int e = has_8bit(c, d, 0);
		if (e != 0) {
			if (e > 0)
				snprintf(r, sizeof r, "554 5.6.3 the message has 8-bit content and %s does not "
				         "offer 8BITMIME (no conversion to 7 bit is done)", c->peer);
			job_end(c, e > 0 ? PETREL_BOUNCE : PETREL_DEFER,
			        e > 0 ? r : "451 4.3.0 cannot read the queued message");
			return 1;
		}
	}
	for (int i = 0; i < j->nrcpt; i++)
		j->accepted[i] = 0;
	c->ncmd = j->nrcpt + 2;
	c->sent = c->got = c->naccepted = c->dot_next = 0;
	c->mail_failed = 0;
	c->abort_data = 0;
	c->st = S_TXN;
	if (c->rset_due) {
		cmd(c, "RSET");
		c->rset_due = 0;
		c->rset_reply = 1;
	}
	send_next(c);
	return 0;
}

void smtp_conn_give(struct smtp_conn *c, struct smtp_job *j)
{
	c->job = j;
	int r = txn_begin(c);
	if (r == 1)
		r = session_up(c);
	/* send at once: an idle socket takes the commands, and waiting for
	 * the write event would cost a loop turn and two epoll_ctl calls per
	 * message (do_flush may end c: then it returns -1) */
	if (r == 0 && do_flush(c) == 0)
		watch(c);
}

void smtp_conn_quit(struct smtp_conn *c)
{
	if (c->st != S_IDLE || c->job)
		return;
	c->st = S_QUIT;
	cmd(c, "QUIT");
	set_deadline(c, c->m->to.quit);
	watch(c);
}

/* The session is ready for a (next) job; returns 0 or -1 (c gone). */
static int session_up(struct smtp_conn *c)
{
	c->up = 1;
	if (c->p.reuse_count > 0 && c->nmsgs >= c->p.reuse_count) {
		c->st = S_IDLE;
		smtp_conn_quit(c);
		return 0;
	}
	struct smtp_job *j;
	while ((j = c->ops->want_job(c, c->arg))) {
		c->job = j;
		int r = txn_begin(c);
		if (r != 1)
			return r;
	}
	c->st = S_IDLE;
	c->deadline = 0;
	c->idle_since = smtp_now();
	return 0;
}

/* The transaction is over: RSET, then the next job.  With PIPELINING
 * (RFC 2920 3.1: RSET may open a command group) the RSET goes in one
 * group with the next job's MAIL, RCPT and DATA (txn_begin), a round
 * trip and two system calls less per message: at once when a job is
 * waiting, else when an idle connection is given one; one that is never
 * used again only sends QUIT.  Without PIPELINING, RSET is answered
 * before the next job or idling. */
static int txn_over(struct smtp_conn *c)
{
	job_end(c, 0, NULL);
	if (c->p.reuse_count > 0 && c->nmsgs >= c->p.reuse_count) {
		c->st = S_IDLE;
		smtp_conn_quit(c);
		return 0;
	}
	if (c->caps & CAP_PIPELINING) {
		c->rset_due = 1;
		return session_up(c);
	}
	c->st = S_RSET;
	cmd(c, "RSET");
	set_deadline(c, c->m->to.rset);
	return 0;
}

static int result_of(int code)
{
	return code / 100 == 2 ? PETREL_DELIVERED : code / 100 == 5 ? PETREL_BOUNCE : PETREL_DEFER;
}

static void fill_body(struct smtp_conn *c)
{
	const struct petrel_host *h = c->m->host;
	char buf[BODY_CHUNK];
	while (c->st == S_BODY && c->outlen - c->outoff < OUT_HIGH) {
		ssize_t r = h->delivery_read(c->job->d, buf, sizeof buf);
		if (r < 0) {
			/* cannot read our own queue file: close without the dot so
			 * the peer never takes a truncated message */
			h->log(PETREL_LOG_ERROR, "%s: %s: reading the queued message: %s", c->m->name,
			       h->delivery_qid(c->job->d), strerror(errno));
			c->body_eof = -1;
			return;
		}
		if (r == 0) {
			out_reserve(c, 5);
			if (!c->bol) {
				memcpy(c->out + c->outlen, "\r\n", 2);
				c->outlen += 2;
			}
			memcpy(c->out + c->outlen, ".\r\n", 3);
			c->outlen += 3;
			c->st = S_DOT;
			return;
		}
		out_reserve(c, (size_t)r * 2);
		/* dot-stuffing a line at a time: memchr and memcpy, not a test
		 * per byte (this loop was the transport's top cost at 100 KiB) */
		char *o = c->out + c->outlen;
		const char *p = buf, *end = buf + r;
		while (p < end) {
			if (c->bol && *p == '.')
				*o++ = '.';
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
			memcpy(o, p, n);
			o += n;
			p += n;
			c->bol = nl != NULL;
		}
		c->outlen = (size_t)(o - c->out);
	}
}

/* One complete reply in a transaction. */
static int txn_reply(struct smtp_conn *c)
{
	struct smtp_job *j = c->job;
	if (c->rset_reply) {
		/* the RSET that opened this group: a server that refuses it is
		 * in no state we know; the job goes back, the session ends */
		c->rset_reply = 0;
		if (c->rcode / 100 != 2)
			return session_error(c, "451 4.5.0 %s refused RSET: %s", c->peer, c->rtext);
		return 0;
	}
	int n = j->nrcpt;
	int k = c->got++;
	int res = result_of(c->rcode);
	if (k == 0) {
		if (res != PETREL_DELIVERED) {
			c->mail_failed = res;
			snprintf(c->mail_reply, sizeof c->mail_reply, "%s", c->rtext);
		}
	} else if (k <= n) {
		if (c->mail_failed)
			;   /* the MAIL reply decides */
		else if (res == PETREL_DELIVERED) {
			j->accepted[k - 1] = 1;
			c->naccepted++;
		} else {
			smtp_job_result(c->m, j, k - 1, res, c->rtext);
		}
	} else {
		/* DATA */
		if (c->mail_failed || !c->naccepted) {
			if (c->mail_failed)
				smtp_job_result_all(c->m, j, c->mail_failed, c->mail_reply);
			if (c->rcode == 354 && c->m->lmtp)
				/* RFC 2033 4.2: DATA must fail when no RCPT succeeded;
				 * after a "." we could not tell how many replies follow */
				return session_error(c, "451 4.5.0 %s accepted DATA with no recipient", c->peer);
			if (c->rcode == 354) {
				c->abort_data = 1;
				c->st = S_DOT;
				cmd(c, ".");
				set_deadline(c, c->m->to.data_done);
				return 0;
			}
			return txn_over(c);
		}
		if (c->rcode != 354) {
			smtp_job_result_all(c->m, j, res == PETREL_DELIVERED ? PETREL_DEFER : res, c->rtext);
			return txn_over(c);
		}
		if (c->m->host->delivery_rewind(j->d) < 0) {
			smtp_job_result_all(c->m, j, PETREL_DEFER, "451 4.3.0 cannot read the queued message");
			return session_error(c, "451 4.3.0 cannot read the queued message");
		}
		c->st = S_BODY;
		c->bol = 1;
		c->body_eof = 0;
		set_deadline(c, c->m->to.data_block);
		fill_body(c);
		if (c->body_eof < 0)
			return session_error(c, "451 4.3.0 cannot read the queued message");
		return 0;
	}
	if (!(c->caps & CAP_PIPELINING)) {
		if (k == 0 && c->mail_failed) {
			smtp_job_result_all(c->m, j, c->mail_failed, c->mail_reply);
			return txn_over(c);
		}
		if (k == n && !c->naccepted)
			return txn_over(c);   /* every RCPT refused: no DATA */
		send_next(c);
	}
	return 0;
}

/* The next accepted recipient from i on, or nrcpt. */
static int next_accepted(const struct smtp_job *j, int i)
{
	while (i < j->nrcpt && !j->accepted[i])
		i++;
	return i;
}

/* The reply to the final dot: one for the message, or with LMTP one per
 * recipient that RCPT accepted, in their order (RFC 2033 4.2), each
 * deciding its recipient; a connection lost in between defers the ones
 * not yet answered, as job_end does for every recipient left. */
static int dot_reply(struct smtp_conn *c)
{
	struct smtp_job *j = c->job;
	const struct petrel_host *h = c->m->host;
	if (c->m->lmtp && !c->abort_data) {
		int i = next_accepted(j, c->dot_next);
		if (i < j->nrcpt) {
			/* in the mailbox: the final delivery, whose success report
			 * (NOTIFY=SUCCESS) is ours to send, "delivered" */
			int r = result_of(c->rcode);
			if (r == PETREL_DELIVERED)
				r = PETREL_DELIVERED_FINAL;
			smtp_job_result(c->m, j, i, r, c->rtext);
		}
		c->dot_next = next_accepted(j, i + 1);
		if (c->dot_next < j->nrcpt) {
			set_deadline(c, c->m->to.data_done);
			return 0;
		}
		return txn_over(c);
	}
	if (!c->abort_data) {
		int res = result_of(c->rcode);
		for (int i = 0; i < j->nrcpt; i++) {
			if (!j->accepted[i])
				continue;
			int r = res;
			if (r == PETREL_DELIVERED && !(c->caps & CAP_DSN) &&
			    (h->delivery_rcpt_notify(j->d, i) & PETREL_NOTIFY_SUCCESS))
				r = PETREL_RELAYED;
			smtp_job_result(c->m, j, i, r, c->rtext);
		}
	}
	return txn_over(c);
}

/* --- replies --- */

/* Does the first word of text name this host? */
static int names_me(struct smtp_conn *c, const char *text)
{
	const char *me = c->m->hostname;
	size_t n = strlen(me);
	return n && !strncasecmp(text, me, n) && (text[n] == 0 || text[n] == ' ');
}

static void b64(char *out, size_t size, const void *in, size_t n)
{
	if (4 * ((n + 2) / 3) + 1 > size) {
		out[0] = 0;
		return;
	}
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* EHLO/HELO done (at this TLS level): STARTTLS, AUTH or ready. */
static int after_ehlo(struct smtp_conn *c)
{
	enum smtp_tls_policy pol = c->p.tls;
	if (!c->tls_on && !c->p.implicit_tls && pol != TLS_NONE && c->clear_ti != c->ti) {
		if (c->caps & CAP_STARTTLS) {
			c->st = S_STARTTLS;
			cmd(c, "STARTTLS");
			set_deadline(c, c->m->to.starttls);
			return 0;
		}
		if (pol >= TLS_ENCRYPT)
			return target_fail(c, "451 4.7.4 TLS is required but %s does not offer STARTTLS",
			                   c->peer);
	}
	if (c->p.auth_user && c->p.auth_password) {
		if (!c->tls_on)
			return target_fail(c, "451 4.7.10 not sending credentials to %s without TLS", c->peer);
		char plain[800];
		const char *u = c->p.auth_user, *pw = c->p.auth_password;
		size_t ul = strlen(u), pl = strlen(pw);
		if (ul + pl + 2 > 500)
			return target_fail(c, "451 4.7.8 credentials for %s too long", c->peer);
		if (c->caps & CAP_AUTH_PLAIN) {
			char raw[520];
			raw[0] = 0;
			memcpy(raw + 1, u, ul);
			raw[1 + ul] = 0;
			memcpy(raw + 2 + ul, pw, pl);
			b64(plain, sizeof plain, raw, ul + pl + 2);
			c->st = S_AUTH;
			cmd(c, "AUTH PLAIN %s", plain);
		} else if (c->caps & CAP_AUTH_LOGIN) {
			c->st = S_AUTH_USER;
			cmd(c, "AUTH LOGIN");
		} else {
			return target_fail(c, "451 4.7.8 %s offers no AUTH PLAIN or LOGIN", c->peer);
		}
		set_deadline(c, c->m->to.auth);
		return 0;
	}
	return session_up(c);
}

/* A complete reply: rcode and rtext are set.  Returns 0 or -1 (c gone). */
static int on_reply(struct smtp_conn *c)
{
	int cls = c->rcode / 100;
	const struct petrel_host *h = c->m->host;
	switch (c->st) {
	case S_GREETING:
		if (cls != 2)
			return target_fail(c, "451 4.4.2 %s greeted us with: %s", c->peer, c->rtext);
		/* an LMTP server is usually this host, by name too: the loop
		 * check by name is for SMTP's MX hosts */
		if (!c->m->lmtp && names_me(c, c->rtext + 4)) {
			close_fd(c);
			c->ops->failed(c, c->peer, 1, c->arg);
			conn_free(c);
			return -1;
		}
		return send_ehlo(c);
	case S_EHLO:
		if (cls != 2) {
			if (c->m->lmtp)     /* LMTP has no HELO to fall back on */
				return target_fail(c, "451 4.4.2 %s refused LHLO: %s", c->peer, c->rtext);
			if (c->helo_done_tls)
				return target_fail(c, "451 4.4.2 %s refused EHLO after STARTTLS: %s", c->peer, c->rtext);
			c->st = S_HELO;
			c->caps = 0;
			cmd(c, "HELO %s", c->m->hostname);
			set_deadline(c, c->m->to.helo);
			return 0;
		}
		if (!c->m->lmtp && names_me(c, c->rtext + 4)) {
			close_fd(c);
			c->ops->failed(c, c->peer, 1, c->arg);
			conn_free(c);
			return -1;
		}
		return after_ehlo(c);
	case S_HELO:
		if (cls != 2)
			return target_fail(c, "451 4.4.2 %s refused HELO: %s", c->peer, c->rtext);
		c->caps = 0;
		return after_ehlo(c);
	case S_STARTTLS:
		if (cls != 2) {
			if (c->p.tls >= TLS_ENCRYPT)
				return target_fail(c, "451 4.7.4 %s refused STARTTLS: %s", c->peer, c->rtext);
			c->caps &= ~(unsigned)CAP_STARTTLS;
			return after_ehlo(c);    /* "may": go on in the clear */
		}
		return tls_start(c);
	case S_AUTH_USER:
	case S_AUTH_PASS:
		if (c->rcode == 334) {
			char enc[800];
			const char *v = c->st == S_AUTH_USER ? c->p.auth_user : c->p.auth_password;
			b64(enc, sizeof enc, v, strlen(v));
			cmd(c, "%s", enc);
			c->st = c->st == S_AUTH_USER ? S_AUTH_PASS : S_AUTH;
			set_deadline(c, c->m->to.auth);
			return 0;
		}
		/* fall through */
	case S_AUTH:
		if (cls != 2)
			return target_fail(c, "451 4.7.8 authentication to %s failed: %s", c->peer, c->rtext);
		h->log(PETREL_LOG_INFO, "%s: authenticated to %s as %s", c->m->name, c->peer, c->p.auth_user);
		return session_up(c);
	case S_RSET:
		if (cls != 2) {
			c->st = S_IDLE;
			smtp_conn_quit(c);
			return 0;
		}
		return session_up(c);
	case S_TXN:
		return txn_reply(c);
	case S_DOT:
		return dot_reply(c);
	case S_QUIT:
		conn_drop(c, "451 4.4.2 QUIT");
		return -1;
	case S_BODY:
		return session_error(c, "451 4.5.0 %s replied during the message content: %s", c->peer,
		                     c->rtext);
	case S_IDLE:
		/* an idle server that speaks is closing (421): let it go */
		conn_drop(c, "451 4.4.2 idle");
		return -1;
	default:
		return session_error(c, "451 4.5.0 unexpected reply from %s: %s", c->peer, c->rtext);
	}
}

/* One reply line (CRLF removed).  Returns 0 or -1 (c gone). */
static int on_line(struct smtp_conn *c, char *line, size_t len)
{
	const char *text;
	switch (smtp_reply_add(&c->reply, line, len, &text)) {
	case SMTP_REPLY_MALFORMED:
		return session_error(c, "451 4.5.0 malformed reply from %s in %s", c->peer, state_name[c->st]);
	case SMTP_REPLY_CODE_CHANGED:
		return session_error(c, "451 4.5.0 malformed reply from %s: the code changes within a reply",
		                     c->peer);
	case SMTP_REPLY_TOO_MANY:
		return session_error(c, "451 4.5.0 reply from %s in %s has more than %d lines", c->peer,
		                     state_name[c->st], SMTP_REPLY_LINES);
	case SMTP_REPLY_MORE:
	case SMTP_REPLY_DONE:
		break;
	}
	if (c->st == S_EHLO && c->reply.lines > 1 && c->reply.code / 100 == 2)
		smtp_ehlo_keyword(text, &c->caps, &c->size_limit);
	if (!c->reply.done)
		return 0;
	c->rcode = c->reply.code;
	memcpy(c->rtext, c->reply.text, sizeof c->rtext);
	return on_reply(c);
}

/* Split the input into lines; returns 0 or -1 (c gone). */
static int process_input(struct smtp_conn *c)
{
	size_t start = 0;
	while (start < c->inlen) {
		char *p = c->in + start;
		size_t len = 0, used = 0;
		switch (smtp_line_next(p, c->inlen - start, &len, &used)) {
		case SMTP_LINE_NUL:
			return session_error(c, "451 4.5.0 reply from %s in %s has a NUL byte", c->peer,
			                     state_name[c->st]);
		case SMTP_LINE_TOO_LONG:
			return session_error(c, "451 4.5.0 reply line from %s in %s is longer than %d bytes",
			                     c->peer, state_name[c->st], SMTP_LINE_MAX);
		case SMTP_LINE_BARE_LF:
			return session_error(c, "451 4.5.0 reply from %s in %s ends a line with a bare LF",
			                     c->peer, state_name[c->st]);
		case SMTP_LINE_MORE:
			goto partial;
		case SMTP_LINE_OK:
			break;
		}
		p[len] = 0;
		start += used;
		enum state before = c->st;
		if (on_line(c, p, len) < 0)
			return -1;
		if (before == S_STARTTLS && c->st == S_TLS_HS) {
			/* bytes after the 220 came before the handshake: never trusted */
			if (start < c->inlen)
				c->m->host->log(PETREL_LOG_WARN, "%s: %s sent %zu bytes after its STARTTLS reply; "
				                "dropped", c->m->name, c->peer, c->inlen - start);
			c->inlen = 0;
			return 0;
		}
	}
partial:
	memmove(c->in, c->in + start, c->inlen - start);
	c->inlen -= start;
	return 0;
}

/* --- I/O --- */

static int do_flush(struct smtp_conn *c)
{
	while (c->outoff < c->outlen) {
		size_t n = c->outlen - c->outoff;
		ssize_t w;
		if (c->tls_on) {
			ERR_clear_error();
			int r = SSL_write(c->ssl, c->out + c->outoff, (int)(n > 65536 ? 65536 : n));
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					return 0;
				return session_error(c, "451 4.4.2 lost connection with %s while sending %s", c->peer,
				                     state_name[c->st]);
			}
			w = r;
		} else {
			w = send(c->fd, c->out + c->outoff, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EAGAIN || errno == EINTR)
					return 0;
				return session_error(c, "451 4.4.2 lost connection with %s while sending %s: %s",
				                     c->peer, state_name[c->st], strerror(errno));
			}
		}
		c->outoff += (size_t)w;
		if (c->st == S_BODY || (c->st == S_DOT && c->outoff < c->outlen))
			set_deadline(c, c->m->to.data_block);
		else if (c->st == S_DOT && c->outoff == c->outlen)
			set_deadline(c, c->m->to.data_done);
		if (c->st == S_BODY) {
			fill_body(c);
			if (c->body_eof < 0)
				return session_error(c, "451 4.3.0 cannot read the queued message");
		}
	}
	return 0;
}

static int do_read(struct smtp_conn *c)
{
	for (;;) {
		int plain = !c->tls_on;
		if (c->inlen >= sizeof c->in)
			return session_error(c, "451 4.5.0 reply line from %s is longer than %d bytes", c->peer,
			                     SMTP_LINE_MAX);
		ssize_t r;
		size_t room = sizeof c->in - c->inlen;
		if (c->tls_on) {
			ERR_clear_error();
			int n = SSL_read(c->ssl, c->in + c->inlen, (int)room);
			if (n <= 0) {
				int e = SSL_get_error(c->ssl, n);
				if (e == SSL_ERROR_WANT_READ)
					return 0;
				if (e == SSL_ERROR_WANT_WRITE) {
					c->ssl_want_write = 1;
					return 0;
				}
				r = e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
				errno = ECONNRESET;
			} else {
				r = n;
			}
		} else {
			r = recv(c->fd, c->in + c->inlen, room, 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
		}
		if (r <= 0) {
			if (c->st == S_QUIT || c->st == S_IDLE) {
				conn_drop(c, "451 4.4.2 closed");
				return -1;
			}
			if (r == 0)
				return session_error(c, "451 4.4.2 lost connection with %s in %s", c->peer,
				                     state_name[c->st]);
			return session_error(c, "451 4.4.2 lost connection with %s in %s: %s", c->peer,
			                     state_name[c->st], strerror(errno));
		}
		c->inlen += (size_t)r;
		enum state before = c->st;
		if (process_input(c) < 0)
			return -1;
		if (c->st == S_TLS_HS && before != S_TLS_HS)
			return tls_step(c);
		/* a short read drained the socket: the loop is level-triggered
		 * and says when more comes, so no recv just to see EAGAIN (TLS
		 * may hold decrypted bytes back: it reads on until WANT_READ) */
		if (plain && (size_t)r < room)
			return 0;
	}
}

static void conn_io(int fd, int events, void *arg)
{
	struct smtp_conn *c = arg;
	(void)fd;
	if (c->st == S_CONNECT) {
		int err = 0;
		socklen_t len = sizeof err;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			target_fail(c, "451 4.4.1 connect to %s: %s", c->peer, strerror(err));
			return;
		}
		if (!(events & PETREL_FD_WRITE))
			return;
		if (c->p.implicit_tls) {
			if (tls_start(c) < 0 || tls_step(c) < 0)
				return;
		} else {
			c->st = S_GREETING;
			set_deadline(c, c->m->to.greeting);
		}
		watch(c);
		return;
	}
	if (c->st == S_TLS_HS) {
		if (tls_step(c) < 0)
			return;
		if (c->st == S_TLS_HS) {
			watch(c);
			return;
		}
	}
	if (c->ssl_want_write && (events & PETREL_FD_WRITE)) {
		c->ssl_want_write = 0;
		events |= PETREL_FD_READ;
	}
	if (do_flush(c) < 0)
		return;
	if ((events & PETREL_FD_READ) && do_read(c) < 0)
		return;
	if (do_flush(c) < 0)
		return;
	watch(c);
}

void smtp_conn_check_timeout(struct smtp_conn *c, unsigned long long now)
{
	if (!c->deadline || now < c->deadline)
		return;
	c->deadline = 0;
	if (c->st == S_CONNECT) {
		target_fail(c, "451 4.4.1 connect to %s: timed out", c->peer);
		return;
	}
	if (c->st == S_QUIT) {
		conn_drop(c, "451 4.4.2 QUIT timed out");
		return;
	}
	session_error(c, "451 4.4.2 conversation with %s timed out in %s", c->peer, state_name[c->st]);
}
