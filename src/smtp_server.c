/*
 * smtp_server.c - the SMTP server session (RFC 5321): connection, command
 * lines, the state machine, the hook chain and replies.
 *
 * Strictness: a command line ends only at CR LF; a bare CR or LF in it is
 * answered 500 5.5.2 and the line is dropped.  Lines over
 * SMTP_CMD_LINE_MAX octets get 500 5.5.6.  Replies to pipelined commands
 * are sent together when the input runs dry (RFC 2920); a command that
 * follows DATA in the same packet is a synchronisation error (554 5.5.0,
 * connection closed).
 *
 * Errors (Postfix's smtpd_soft/hard_error_limit): every 4xx/5xx reply
 * counts, refused recipients included (no free address harvesting), and
 * so does each junk command (NOOP, RSET, VRFY, HELP, HELO, EHLO) past
 * junk_command_limit.  Past soft_error_limit each reply waits
 * error_sleep_time on a timer (the tarpit; the loop never sleeps); at
 * hard_error_limit the session gets 421 and is closed.  A delivered
 * message sets both counts back to zero.
 *
 * Back-pressure: replies wait in s->out; when more than OUTPUT_PAUSE bytes
 * are waiting and the socket takes no more, no further command is run and
 * nothing more is read until the client has read them down to
 * OUTPUT_RESUME: pipelined commands are answered in order, at the pace the
 * client reads.  A client that reads nothing for smtp_timeout is closed.
 *
 * TLS (RFC 3207): a "starttls" listener offers STARTTLS; an "implicit" one
 * shakes hands first and greets after.  Bytes the client pipelined behind
 * STARTTLS are thrown away (CVE-2011-0411: they would run as if they came
 * under TLS), and the session starts over as before EHLO.  The handshake
 * is non-blocking like everything else and has the command timeout.
 *
 * Logs: "connect from", TLS established or failed, each rejection with the
 * queue id, "disconnect from" with per-command counts.
 */
#include "smtp_server.h"
#include "generation.h"
#include "filter_chain.h"
#include "log.h"
#include "metrics.h"
#include "msg_edit.h"
#include "queue.h"
#include "spool.h"
#include "stats.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define INPUT_PAUSE (256 * 1024)
#define OUTPUT_PAUSE (64 * 1024)
#define OUTPUT_RESUME (16 * 1024)
#define FULL_WARN_MS 10000     /* max_connections warnings: one per 10 s */

#define IO_AGAIN (-2)

static void session_close(struct petrel_session *s, const char *why);
static void on_io(struct ev_loop *loop, int fd, int mask, void *arg);
static int tls_begin(struct petrel_session *s);
static const char *state_word(const struct petrel_session *s);
static void pregreet(struct petrel_session *s);

void session_reply(struct petrel_session *s, const char *fmt, ...)
{
	size_t start = s->out.len;
	va_list ap;
	va_start(ap, fmt);
	buf_vaddf(&s->out, fmt, ap);
	va_end(ap);
	/* the (last line of a) 4xx/5xx reply is an error of the session */
	const char *r = s->out.data + start;
	if (s->out.len - start >= 3 && (r[0] == '4' || r[0] == '5') && r[3] != '-')
		s->errors++;
	buf_add(&s->out, "\r\n", 2);
}

void session_mail_delivered(struct petrel_session *s)
{
	s->errors = 0;
	s->junk = 0;
}

/* --- bytes on the wire: the socket itself, or TLS over it --- */

/* Read: > 0 bytes, 0 at the end, IO_AGAIN when nothing is there, -1. */
static ssize_t wire_read(struct petrel_session *s, char *buf, size_t len)
{
	if (s->tls) {
		ssize_t n = tls_read(s->tls, buf, len);
		s->tls_read_wants = n == TLS_WANT_WRITE ? EV_WRITE : 0;
		if (n == TLS_FAILED)
			log_info("TLS read error from %s: %s", s->peer_name, tls_error(s->tls));
		return n == TLS_WANT_READ || n == TLS_WANT_WRITE ? IO_AGAIN : n;
	}
	for (;;) {
		ssize_t n = recv(s->fd, buf, len, 0);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : -1;
	}
}

/* Write: > 0 bytes, IO_AGAIN when the socket is full, -1. */
static ssize_t wire_write(struct petrel_session *s, const char *buf, size_t len)
{
	if (s->tls) {
		ssize_t n = tls_write(s->tls, buf, len);
		s->tls_write_wants = n == TLS_WANT_READ ? EV_READ : 0;
		return n == TLS_WANT_READ || n == TLS_WANT_WRITE ? IO_AGAIN : n;
	}
	for (;;) {
		ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return errno == EAGAIN || errno == EWOULDBLOCK ? IO_AGAIN : -1;
	}
}

/* What the socket is watched for.  Under TLS a read may need the socket
 * writable first and a write readable (the *_wants), and a handshake
 * waits for whatever OpenSSL asked. */
static void update_events(struct petrel_session *s)
{
	const char *err;
	int mask = 0;
	if (s->tls_handshaking) {
		mask = s->tls_hs_wants;
	} else {
		if (!s->read_paused && !s->tarpit && s->state != S_CLOSING && !s->tls_start_after_flush &&
		    !s->peer_eof)
			mask |= s->tls_read_wants ? s->tls_read_wants : EV_READ;
		if (s->out.len && !s->tarpit)
			mask |= s->tls_write_wants ? s->tls_write_wants : EV_WRITE;
	}
	if (ev_fd_set(s->srv->loop, s->fd, mask, on_io, s, &err) < 0)
		log_error("%s: epoll: %s", s->peer_name, err);
}

bool session_flush(struct petrel_session *s)
{
	if (s->fd < 0) {
		if (s->state == S_COMMIT)
			return true;
		session_close(s, NULL);
		return false;
	}
	if (s->tls_handshaking || s->tarpit) {     /* replies wait for the handshake, the tarpit */
		update_events(s);
		return true;
	}
	while (s->out.len) {
		ssize_t n = wire_write(s, s->out.data, s->out.len);
		if (n == IO_AGAIN)
			break;
		if (n < 0) {
			session_close(s, "lost connection");
			return false;
		}
		buf_consume(&s->out, (size_t)n);
	}
	if (!s->out.len && s->state == S_CLOSING) {
		session_close(s, NULL);
		return false;
	}
	/* Half-closed: once what came before the end has had its replies
	 * (a commit, a hook, a password check may still owe one), nothing
	 * more can come.  Postfix, whose commit is synchronous, answers a
	 * pipelined "DATA ... . QUIT" and EOF as well. */
	if (!s->out.len && s->peer_eof && !s->in_process && s->state != S_COMMIT && !s->pending &&
	    !s->auth_job && !s->tarpit && !s->greet_wait && !s->tls_handshaking &&
	    !s->tls_start_after_flush) {
		session_close(s, "lost connection");
		return false;
	}
	if (!s->out.len) {
		buf_free(&s->out);
		/* STARTTLS: the 220 went out in clear text, now the handshake */
		if (s->tls_start_after_flush && tls_begin(s) < 0)
			return false;
	}
	update_events(s);
	return true;
}

/* --- transactions --- */

static void addr_set(struct petrel_addr *a, const struct smtp_addr *sa)
{
	char tmp[SMTP_PATH_MAX * 2 + 8];
	if (smtp_addr_format(sa, tmp, sizeof tmp) < 0)
		tmp[0] = 0;
	a->str = xstrdup(tmp);
	a->local = xstrdup(sa->null ? "" : sa->local_plain);
	a->domain = xstrdup(sa->null ? "" : sa->domain);
}

void addr_clear(struct petrel_addr *a)
{
	xfree(&a->str);
	xfree(&a->local);
	xfree(&a->domain);
	xfree(&a->orcpt);
	a->notify = 0;
}

void txn_free(struct petrel_session *s)
{
	struct petrel_txn *t = s->txn;
	if (!t)
		return;
	chain_txn_end(s, t);
	msg_free(t);
	if (t->fd >= 0)
		spool_abort(s->srv->spool, t->qm ? t->qm->slot : -1, t->fd);
	addr_clear(&t->sender);
	addr_clear(&t->cur_rcpt);
	free(t->slots);
	for (int i = 0; i < t->nrcpt; i++)
		addr_clear(&t->rcpts[i]);
	free(t->rcpts);
	qmsg_free(&t->qm);
	buf_free(&t->wbuf);
	free(t);
	s->txn = NULL;
}

/* Refuse a command: send the reply and log it with the queue id. */
__attribute__((format(printf, 4, 5)))
static void reject(struct petrel_session *s, const char *cmd, const char *to,
                   const char *fmt, ...)
{
	char reply[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reply, sizeof reply, fmt, ap);
	va_end(ap);
	stats_rejected(metrics_listener_slot(s->l), stats_reject_reason_of(cmd, reply));
	session_reply(s, "%s", reply);
	log_info("%s: reject: %s from %s: %s; from=<%s> to=<%s> helo=<%s>",
	         s->txn ? s->txn->qid : "NOQUEUE", cmd, s->peer_name, reply,
	         s->txn ? s->txn->sender.str : "", to ? to : "", s->helo ? s->helo : "");
}

/* Refuse for a REJECT/TEMPFAIL verdict: the module's reply (set) or a
 * default naming 'what'. */
static void reject_verdict(struct petrel_session *s, char *set, int v, const char *what,
                           const char *cmd, const char *to)
{
	if (set[0])
		reject(s, cmd, to, "%s", set);
	else if (v == PETREL_REJECT)
		reject(s, cmd, to, "550 5.7.1 %s rejected", what);
	else
		reject(s, cmd, to, "451 4.7.1 %s temporarily rejected, try again later", what);
	set[0] = 0;
}

/* --- commands --- */

static void do_helo(struct petrel_session *s, const struct smtp_cmd *c)
{
	txn_free(s);
	free(s->helo);
	s->helo = xstrdup(c->arg);
	s->esmtp = c->verb == SMTP_EHLO;
	chain_start(s, STEP_HELO);
}

static bool starttls_offered(const struct petrel_session *s)
{
	return s->l->conf->tls == TLS_STARTTLS && s->l->tls && !s->tls;
}

static void helo_done(struct petrel_session *s, int v)
{
	if (v == PETREL_REJECT || v == PETREL_TEMPFAIL) {
		reject_verdict(s, s->reply, v, "HELO", s->esmtp ? "EHLO" : "HELO", NULL);
		xfree(&s->helo);
		return;
	}
	const char *host = s->gen->cfg->hostname;
	if (!s->esmtp) {
		session_reply(s, "250 %s", host);
		return;
	}
	session_reply(s, "250-%s", host);
	session_reply(s, "250-PIPELINING");
	session_reply(s, "250-SIZE %llu", (unsigned long long)s->gen->cfg->message_size_limit);
	session_reply(s, "250-8BITMIME");
	session_reply(s, "250-SMTPUTF8");
	session_reply(s, "250-ENHANCEDSTATUSCODES");
	session_reply(s, "250-DSN");
	if (starttls_offered(s))
		session_reply(s, "250-STARTTLS");
	if (auth_offered(s))
		session_reply(s, "250-AUTH PLAIN LOGIN");
	session_reply(s, "250 CHUNKING");
}

static void do_mail(struct petrel_session *s, const struct smtp_cmd *c)
{
	if (!s->helo) {
		session_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->txn) {
		session_reply(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (c->body == SMTP_BODY_BINARYMIME) {
		/* not advertised (RFC 3030): refuse rather than take binary data */
		reject(s, "MAIL", NULL, "555 5.5.4 BODY=BINARYMIME is not supported");
		return;
	}
	struct config *cfg = s->gen->cfg;
	if (c->has_size && c->size > cfg->message_size_limit) {
		reject(s, "MAIL", NULL, "552 5.3.4 Message size exceeds fixed limit");
		return;
	}
	uint64_t keep = cfg->message_size_limit / 2 * 3;
	if (cfg->queue_minfree > keep)
		keep = cfg->queue_minfree;
	if (spool_free_bytes(s->srv->spool) < keep + (c->has_size ? c->size : 0)) {
		log_warn("spool %s: less than %llu bytes free", cfg->spool,
		         (unsigned long long)(keep + (c->has_size ? c->size : 0)));
		reject(s, "MAIL", NULL, "452 4.3.1 Insufficient system storage");
		return;
	}
	struct petrel_txn *t = xcalloc(1, sizeof *t);
	t->s = s;
	t->fd = -1;
	spool_new_qid(s->srv->spool, t->qid);
	addr_set(&t->sender, &c->addr);
	t->smtputf8 = c->smtputf8;
	t->qm = qmsg_new(t->qid, t->sender.str, 0);
	t->qm->flags = (c->body == SMTP_BODY_8BITMIME ? QMSG_8BITMIME : 0) |
	               (c->smtputf8 ? QMSG_SMTPUTF8 : 0) |
	               (c->ret == SMTP_RET_FULL ? QMSG_RET_FULL : 0) |
	               (c->ret == SMTP_RET_HDRS ? QMSG_RET_HDRS : 0);
	if (c->envid[0])
		t->qm->envid = xstrdup(c->envid);
	t->discard = s->discard_all;
	t->hold = s->hold_all;
	s->txn = t;
	chain_start(s, STEP_MAIL);
}

static void mail_done(struct petrel_session *s, int v)
{
	if (v == PETREL_REJECT || v == PETREL_TEMPFAIL) {
		reject_verdict(s, s->txn->reply, v, "Sender address", "MAIL", NULL);
		txn_free(s);
		return;
	}
	session_reply(s, "250 2.1.0 Ok");
}

static void do_rcpt(struct petrel_session *s, const struct smtp_cmd *c)
{
	struct petrel_txn *t = s->txn;
	if (!t) {
		session_reply(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (t->in_bdat) {
		session_reply(s, "503 5.5.1 Error: RCPT after BDAT");
		return;
	}
	const char *refuse = t->nrcpt >= s->gen->cfg->recipient_limit
	                     ? "452 4.5.3 Error: too many recipients"
	                     : c->addr.utf8 && !t->smtputf8
	                     ? "553 5.6.7 Error: UTF-8 address requires the SMTPUTF8 parameter on MAIL"
	                     : NULL;
	if (refuse) {
		/* the address only for the log line, as the other refusals */
		char to[sizeof c->addr.local + sizeof c->addr.domain + 1];
		if (smtp_addr_format(&c->addr, to, sizeof to) < 0)
			to[0] = '\0';
		reject(s, "RCPT", to, "%s", refuse);
		return;
	}
	struct petrel_addr *a = &t->cur_rcpt;
	addr_clear(a);
	addr_set(a, &c->addr);
	a->notify = c->notify;
	if (c->orcpt[0])
		a->orcpt = xstrdup(c->orcpt);
	if (!a->domain[0]) {
		/* <Postmaster> (RFC 5321 4.5.1): the first local domain's. */
		struct config *cfg = s->gen->cfg;
		free(a->domain);
		free(a->str);
		a->domain = xstrdup(cfg->ndomains ? cfg->domains[0] : cfg->hostname);
		a->str = xasprintf("postmaster@%s", a->domain);
		free(a->local);
		a->local = xstrdup("postmaster");
	}
	chain_start(s, STEP_RCPT);
}

int session_route(struct petrel_session *s, struct petrel_txn *t, struct petrel_addr *a)
{
	struct module *router = s->gen->router;
	struct petrel_route r = { .qm = t->qm, .rcpt = a, .srv = s->srv };
	int ndest_before = t->qm->ndests;
	int rr = router->desc->router->route(router->state, &r, a);
	if (rr == PETREL_ROUTE_OK && r.added == 0)
		rr = PETREL_ROUTE_TEMPFAIL;
	t->check_reply[0] = 0;
	if (rr == PETREL_ROUTE_OK)
		rr = queue_check_dests(s->srv, t->qm, ndest_before, a->notify, a->orcpt, t->check_reply,
		                       sizeof t->check_reply);
	if (rr != PETREL_ROUTE_OK) {
		/* drop any destinations a failing router added */
		while (t->qm->ndests > ndest_before)
			qmsg_drop_dest(t->qm, t->qm->ndests - 1);
	}
	return rr;
}

static void rcpt_done(struct petrel_session *s, int v)
{
	struct petrel_txn *t = s->txn;
	struct petrel_addr *a = &t->cur_rcpt;
	if (v == PETREL_REJECT || v == PETREL_TEMPFAIL) {
		reject_verdict(s, t->reply, v, "Recipient address", "RCPT", a->str);
		addr_clear(a);
		t->nrefused++;
		return;
	}
	int rr = session_route(s, t, a);
	if (rr != PETREL_ROUTE_OK) {
		if (t->check_reply[0])
			reject(s, "RCPT", a->str, "%s", t->check_reply);
		else if (rr == PETREL_ROUTE_UNKNOWN)
			reject(s, "RCPT", a->str, "550 5.1.1 <%s>: Recipient address rejected: User unknown",
			       a->str);
		else
			reject(s, "RCPT", a->str, "451 4.3.0 <%s>: Temporary lookup failure", a->str);
		addr_clear(a);
		t->nrefused++;
		return;
	}
	t->rcpts = xrealloc(t->rcpts, (size_t)(t->nrcpt + 1) * sizeof *t->rcpts);
	t->rcpts[t->nrcpt++] = *a;
	memset(a, 0, sizeof *a);
	session_reply(s, "250 2.1.5 Ok");
}

/*
 * An early talker (Postfix postscreen's PREGREET, sendmail's greet_pause):
 * a client that sends before the 220 did not wait for it, as RFC 5321
 * 3.1 requires; spam engines do, real MTAs do not.  Logged with what it
 * sent (printable, at most 48 octets), answered 554, closed.
 */
static void pregreet(struct petrel_session *s)
{
	char what[49];
	size_t n = s->in.len < sizeof what - 1 ? s->in.len : sizeof what - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s->in.data[i];
		what[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	what[n] = 0;
	log_info("pregreet: %zu octet(s) after %llu ms from %s: %s", s->in.len,
	         (unsigned long long)(ev_now_ms() - s->greet_from), s->peer_name, what);
	buf_reset(&s->in);
	if (ev_timer_armed(&s->greet_timer))
		ev_timer_stop(s->srv->loop, &s->greet_timer);
	s->greet_wait = false;
	stats_rejected(metrics_listener_slot(s->l), STATS_REJECT_PROTOCOL);
	session_reply(s, "554 5.5.0 %s Error: SMTP protocol violation: talking before the greeting",
	              s->gen->cfg->hostname);
	s->state = S_CLOSING;
}

static bool listener_is_msa(const struct listener *l)
{
	return l && l->conf && l->conf->stage && !strcmp(l->conf->stage, "msa");
}

static void connect_done(struct petrel_session *s, int v)
{
	struct server *srv = s->srv;
	if (v == PETREL_REJECT || v == PETREL_TEMPFAIL) {
		if (s->reply[0])
			reject(s, "CONNECT", NULL, "%s", s->reply);
		else
			reject(s, "CONNECT", NULL, "%s", v == PETREL_REJECT ? "554 5.7.1 Service refused"
			       : "421 4.7.1 Service temporarily unavailable");
		s->state = S_CLOSING;
		s->tls_restart = false;
		return;
	}
	if (s->tls_restart) {        /* after STARTTLS: the client sends EHLO, no greeting */
		s->tls_restart = false;
		return;
	}
	if (s->in.len) {             /* it talked while the connect hooks ran */
		pregreet(s);
		return;
	}
	/* relay_networks are trusted, as postscreen's permit lists: no pause.
	 * Nor on msa listeners: a mail client must log in before it may send,
	 * so the early-talker test buys nothing there, and every message a
	 * client submits (one connection each) would wait greet_pause;
	 * Postfix runs postscreen on port 25 only. */
	if (s->gen->cfg->greet_pause > 0 && !s->may_relay && !listener_is_msa(s->l)) {
		s->greet_wait = true;
		s->greet_from = ev_now_ms();
		ev_timer_start(srv->loop, &s->greet_timer, (uint64_t)s->gen->cfg->greet_pause);
		return;
	}
	session_reply(s, "220 %s ESMTP petrel", s->gen->cfg->hostname);
}

/* greet_pause is over and the client kept quiet: greet it. */
static void on_greet(struct ev_loop *loop, void *arg)
{
	(void)loop;
	struct petrel_session *s = arg;
	s->greet_wait = false;
	if (s->in.len) {
		pregreet(s);
	} else {
		session_reply(s, "220 %s ESMTP petrel", s->gen->cfg->hostname);
		s->turn_ours = true;     /* its command deadline starts at the 220 */
	}
	session_process(s);
}

void step_done(struct petrel_session *s, enum chain_step step, int v)
{
	if (!s->txn && (step == STEP_MAIL || step == STEP_RCPT || step == STEP_MESSAGE)) {
		log_error("%s: hook step ended without its transaction: ignored", s->peer_name);
		return;      /* a bug: never reached since shutdown cancels pending hooks */
	}
	switch (step) {
	case STEP_CONNECT: connect_done(s, v); break;
	case STEP_HELO: helo_done(s, v); break;
	case STEP_AUTH: auth_done(s, v); break;
	case STEP_MAIL: mail_done(s, v); break;
	case STEP_RCPT: rcpt_done(s, v); break;
	case STEP_MESSAGE: message_done(s, v); break;
	}
	if (!s->in_process)
		session_process(s);     /* resumed: carry on with buffered input */
}

/* The reply when DATA/BDAT come without an accepted recipient, or NULL. */
static const char *no_rcpt_reply(struct petrel_session *s)
{
	if (!s->txn)
		return "503 5.5.1 Error: need MAIL command";
	if (!s->txn->nrcpt)
		return s->txn->nrefused ? "554 5.5.1 Error: no valid recipients"
		                        : "503 5.5.1 Error: need RCPT command";
	return NULL;
}

static int need_rcpt(struct petrel_session *s)
{
	const char *r = no_rcpt_reply(s);
	if (r)
		session_reply(s, "%s", r);
	return r ? -1 : 0;
}

static void do_data(struct petrel_session *s)
{
	const char *err;
	if (need_rcpt(s) < 0)
		return;
	if (s->txn->in_bdat) {
		session_reply(s, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	if (s->in.len) {
		/* RFC 2920 3.1: DATA ends a command group; the client must wait
		 * for 354.  Whatever follows cannot be trusted to be content. */
		reject(s, "DATA", NULL, "554 5.5.0 Error: improper command pipelining after DATA");
		s->state = S_CLOSING;
		return;
	}
	if (data_begin(s, &err) < 0) {
		session_reply(s, "%s", err);
		return;
	}
	session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	s->state = S_DATA;
	s->rate_start = ev_now_ms();
	s->rate_bytes = 0;
}

static void do_bdat(struct petrel_session *s, const struct smtp_cmd *c)
{
	const char *err;
	s->bdat_left = s->bdat_size = c->chunk_size;
	s->bdat_last = c->last;
	s->bdat_discard = false;
	s->state = S_BDAT;
	s->rate_start = ev_now_ms();
	s->rate_bytes = 0;
	const char *fail = no_rcpt_reply(s);
	if (!fail && !s->txn->in_bdat && data_begin(s, &err) < 0)
		fail = err;
	if (fail) {
		/* RFC 3030: the chunk is still read, and thrown away, within
		 * the time a chunk may take (no data_begin() set it). */
		s->data_deadline = ev_now_ms() + (uint64_t)s->gen->cfg->data_timeout * 1000;
		s->bdat_discard = true;
		s->bdat_fail = fail;
		return;
	}
	s->txn->in_bdat = true;
}

static void do_starttls(struct petrel_session *s)
{
	if (s->tls) {
		session_reply(s, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (!starttls_offered(s)) {
		session_reply(s, "502 5.5.1 Error: command not implemented");
		return;
	}
	if (s->txn) {
		session_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	session_reply(s, "220 2.0.0 Ready to start TLS");
	/* Whatever came after STARTTLS was sent before the handshake: it
	 * must not run as if it came under TLS (CVE-2011-0411). */
	if (s->in.len)
		log_info("%s: %zu bytes pipelined after STARTTLS discarded", s->peer_name, s->in.len);
	buf_reset(&s->in);
	s->tls_start_after_flush = true;
}

static void handle_line(struct petrel_session *s, const char *line, size_t len)
{
	struct smtp_cmd *c = &s->srv->cmd;
	const char *reply;
	if (smtp_parse_command(line, len, c, &reply) < 0) {
		session_reply(s, "%s", reply);
		return;
	}
	s->ncmds[c->verb]++;
	switch (c->verb) {
	case SMTP_HELO: case SMTP_EHLO: case SMTP_NOOP: case SMTP_RSET: case SMTP_VRFY: case SMTP_HELP:
		/* repeatable at will, and no use to a client past a point */
		if (++s->junk > s->gen->cfg->junk_command_limit)
			s->errors++;
		break;
	default:
		break;
	}
	switch (c->verb) {
	case SMTP_HELO:
	case SMTP_EHLO: do_helo(s, c); break;
	case SMTP_MAIL: do_mail(s, c); break;
	case SMTP_RCPT: do_rcpt(s, c); break;
	case SMTP_DATA: do_data(s); break;
	case SMTP_BDAT: do_bdat(s, c); break;
	case SMTP_RSET:
		txn_free(s);
		session_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_NOOP: session_reply(s, "250 2.0.0 Ok"); break;
	case SMTP_STARTTLS: do_starttls(s); break;
	case SMTP_AUTH: do_auth(s, c->arg); break;
	case SMTP_QUIT:
		session_reply(s, "221 2.0.0 Bye");
		s->state = S_CLOSING;
		break;
	case SMTP_VRFY:
		session_reply(s, "252 2.0.0 Send some mail, I'll try my best");
		break;
	case SMTP_HELP:
		session_reply(s, "214 2.0.0 See RFC 5321 (commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP)");
		break;
	default:
		session_reply(s, "502 5.5.1 Error: command not implemented");
		break;
	}
}

/* Find the CR LF that ends the line starting at p; NULL if none yet.
 * *bare is set when a CR or LF stands alone before it. */
static char *find_crlf(char *p, size_t len, bool *bare)
{
	size_t off = 0;
	*bare = false;
	while (off < len) {
		char *lf = memchr(p + off, '\n', len - off);
		if (!lf)
			break;
		if (lf > p && lf[-1] == '\r') {
			if (memchr(p, '\r', (size_t)(lf - p) - 1))
				*bare = true;
			return lf;
		}
		*bare = true;
		off = (size_t)(lf - p) + 1;
	}
	return NULL;
}

/* A line that is not a command (too long, bare CR or LF): also the end
 * of an AUTH dialog it was meant to answer. */
static void line_refused(struct petrel_session *s, const char *reply)
{
	stats_rejected(metrics_listener_slot(s->l), STATS_REJECT_PROTOCOL);
	session_reply(s, "%s", reply);
	auth_abort(s);
}

/* One command line from s->in, if complete: only CR LF ends it, so text
 * after a bare LF is part of the same (refused) line, never a command of
 * its own.  Returns 0 when more input is needed, 1 when it consumed
 * something. */
static int take_line(struct petrel_session *s)
{
	char *p = s->in.data;
	bool bare;
	char *lf = s->in.len ? find_crlf(p, s->in.len, &bare) : NULL;
	if (s->skipping) {
		if (!lf) {
			/* keep a trailing CR: it may be the start of the CR LF */
			size_t keep = s->in.len && p[s->in.len - 1] == '\r';
			buf_consume(&s->in, s->in.len - keep);
			return 0;
		}
		buf_consume(&s->in, (size_t)(lf - p) + 1);
		s->skipping = false;
		s->cmd_deadline = ev_now_ms() + (uint64_t)s->gen->cfg->smtp_timeout * 1000;
		return 1;
	}
	if (!lf) {
		if (s->in.len >= SMTP_CMD_LINE_MAX) {
			line_refused(s, "500 5.5.6 Error: line too long");
			s->skipping = true;
			return 1;
		}
		return 0;
	}
	size_t n = (size_t)(lf - p);     /* bytes before LF, CR included */
	/* a whole line: the next one has smtp_timeout from now */
	s->cmd_deadline = ev_now_ms() + (uint64_t)s->gen->cfg->smtp_timeout * 1000;
	if (n + 1 > SMTP_CMD_LINE_MAX) {
		line_refused(s, "500 5.5.6 Error: line too long");
		buf_consume(&s->in, n + 1);
		return 1;
	}
	if (bare) {
		line_refused(s, "500 5.5.2 Error: bare <CR> or <LF> received");
		buf_consume(&s->in, n + 1);
		return 1;
	}
	char line[SMTP_CMD_LINE_MAX];
	memcpy(line, p, n - 1);
	line[n - 1] = 0;
	buf_consume(&s->in, n + 1);
	if (s->sasl) {
		auth_response(s, line, n - 1);
		explicit_bzero(line, n - 1);     /* it may hold a password */
	} else {
		handle_line(s, line, n - 1);
	}
	return 1;
}

static void on_tarpit(struct ev_loop *loop, void *arg)
{
	(void)loop;
	struct petrel_session *s = arg;
	s->tarpit = false;
	session_process(s);      /* the held reply goes out, the next command runs */
}

void session_process(struct petrel_session *s)
{
	const struct config *cfg = s->gen->cfg;
	s->in_process = true;
	s->out_paused = false;
	for (;;) {
		if (s->fd < 0 || s->state == S_CLOSING || s->state == S_COMMIT || s->pending ||
		    s->auth_job || s->tls_start_after_flush || s->tls_handshaking || s->tarpit)
			break;
		if (s->greet_wait) {
			if (s->in.len)
				pregreet(s);
			break;
		}
		if (s->errors >= cfg->hard_error_limit) {
			log_info("too many errors (%d) from %s", s->errors, s->peer_name);
			session_reply(s, "421 4.7.0 %s Error: too many errors", cfg->hostname);
			s->state = S_CLOSING;
			break;
		}
		if (s->out.len >= OUTPUT_PAUSE) {
			/* the client sends faster than it reads: its replies first */
			if (!session_flush(s))
				return;          /* gone */
			if (s->out.len >= OUTPUT_PAUSE) {
				s->out_paused = true;
				break;
			}
		}
		if (s->state == S_CMD) {
			bool slow = s->errors >= cfg->soft_error_limit && cfg->error_sleep_time > 0;
			if (!take_line(s))
				break;
			if (slow && s->state != S_CLOSING) {
				/* Postfix's smtpd_error_sleep_time, without blocking the loop */
				s->tarpit = true;
				ev_timer_start(s->srv->loop, &s->tarpit_timer, (uint64_t)cfg->error_sleep_time * 1000);
			}
		} else if (s->state == S_DATA) {
			if (!s->in.len)
				break;
			if (data_consume(s)) {
				s->state = S_CMD;
				s->turn_ours = true;     /* the deadline starts at the reply */
				data_end(s);
			}
		} else if (s->state == S_BDAT) {
			if (s->bdat_left && !s->in.len)
				break;
			if (!bdat_consume(s))
				break;
			s->state = S_CMD;
			s->turn_ours = true;
			if (s->bdat_discard) {
				s->bdat_discard = false;
				session_reply(s, "%s", s->bdat_fail);
			} else if (s->bdat_last) {
				data_end(s);
			} else {
				session_reply(s, "250 2.0.0 Ok: %llu octets received",
				              (unsigned long long)s->bdat_size);
			}
		}
	}
	s->in_process = false;
	/* Back-pressure: stop reading while a client floods us during commit,
	 * or does not read its replies. */
	s->read_paused = s->in.len > INPUT_PAUSE || s->out_paused;
	if (!s->in.len)
		buf_free(&s->in);      /* idle sessions hold no buffers */
	session_set_timer(s);
	session_flush(s);
}

/* --- I/O, timers, lifecycle --- */

static void on_timeout(struct ev_loop *loop, void *arg)
{
	(void)loop;
	struct petrel_session *s = arg;
	if (s->tls_handshaking) {
		log_info("timeout during the TLS handshake from %s", s->peer_name);
		session_close(s, NULL);
		return;
	}
	if (s->out_paused || s->state == S_CLOSING) {
		/* its replies (the last one, or those of pipelined commands)
		 * have not been read for smtp_timeout */
		log_info("timeout after %s from %s: replies not read", state_word(s), s->peer_name);
		session_close(s, NULL);
		return;
	}
	if (s->state == S_COMMIT || s->pending || s->auth_job || s->tarpit || s->greet_wait) {
		session_set_timer(s);    /* our turn, not the client's */
		return;
	}
	if (s->state == S_DATA || s->state == S_BDAT)
		log_info("timeout after %s from %s: %llu octets in %llu ms (min_data_rate %d)",
		         s->state == S_DATA ? "DATA" : "BDAT", s->peer_name,
		         (unsigned long long)s->rate_bytes,
		         (unsigned long long)(ev_now_ms() - s->rate_start), s->gen->cfg->min_data_rate);
	else
		log_info("timeout after command from %s%s", s->peer_name,
		         s->in.len ? " (partial line)" : "");
	if (s->txn)
		txn_free(s);
	session_reply(s, "421 4.4.2 %s Error: timeout exceeded", s->gen->cfg->hostname);
	s->state = S_CLOSING;
	if (session_flush(s))
		session_set_timer(s);    /* not read within smtp_timeout: closed */
}

/*
 * The timer: on our turn (a hook, a commit, a password check, the tarpit,
 * greet_pause), while replies wait to be read and during a handshake,
 * smtp_timeout from now.  For a command line, the deadline set when the
 * previous line was taken, or when our turn ended: bytes of a line that
 * is not complete do not extend it (a client dripping one byte at a time
 * cannot hold a session).  In DATA and BDAT, smtp_timeout per read,
 * within data_timeout for the whole, and within smtp_timeout plus
 * 1/min_data_rate s per octet received since the transfer began
 * (Postfix's smtpd_min_data_rate with smtpd_per_request_deadline).
 */
void session_set_timer(struct petrel_session *s)
{
	if (s->fd < 0)
		return;
	const struct config *cfg = s->gen->cfg;
	uint64_t now = ev_now_ms();
	uint64_t T = (uint64_t)cfg->smtp_timeout * 1000, ms = T;
	bool ours = s->state == S_COMMIT || s->pending || s->auth_job || s->tarpit || s->greet_wait;
	if (ours || s->out_paused || s->state == S_CLOSING || s->tls_handshaking) {
		s->turn_ours = true;
	} else if (s->state == S_DATA || s->state == S_BDAT) {
		uint64_t due = s->data_deadline;
		if (cfg->min_data_rate > 0) {
			uint64_t r = s->rate_start + T + s->rate_bytes * 1000 / (uint64_t)cfg->min_data_rate;
			if (r < due)
				due = r;
		}
		uint64_t left = due > now ? due - now : 0;
		if (left < ms)
			ms = left;
	} else {
		if (s->turn_ours || !s->cmd_deadline) {
			s->turn_ours = false;
			s->cmd_deadline = now + T;
		}
		ms = s->cmd_deadline > now ? s->cmd_deadline - now : 0;
	}
	ev_timer_start(s->srv->loop, &s->timer, ms);
}

/* After the STARTTLS handshake the session starts over (RFC 3207 4.2:
 * nothing learnt from the clear-text part holds): the modules see it end
 * and connect again (fresh slots), and DISCARD/HOLD decided at connect or
 * HELO, a module's session reply and the error and junk counts are
 * forgotten.  Kept: the AUTH failures of the connection (STARTTLS is no way
 * around auth_failure_limit; the per-address table is not the session's
 * anyway), the command counts of the log line, the client address. */
static void session_restart(struct petrel_session *s)
{
	chain_session_end(s);
	xfree(&s->slots);
	s->discard_all = false;
	s->hold_all = false;
	s->reply[0] = 0;
	s->errors = 0;
	s->junk = 0;
	s->tls_restart = true;
	s->in_process = true;        /* step_done must not process yet */
	chain_start(s, STEP_CONNECT);
	s->in_process = false;
}

/* The handshake goes one step further; when done, held replies go out. */
static void tls_step(struct petrel_session *s)
{
	int r = tls_handshake(s->tls);
	if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) {
		s->tls_hs_wants = r == TLS_WANT_READ ? EV_READ : EV_WRITE;
		update_events(s);
		return;
	}
	if (r < 0) {
		log_info("TLS handshake failed from %s: %s", s->peer_name, tls_error(s->tls));
		session_close(s, NULL);
		return;
	}
	s->tls_handshaking = false;
	tls_describe(s->tls, s->tls_info, sizeof s->tls_info);
	log_info("TLS connection established from %s: %s", s->peer_name, s->tls_info);
	if (s->l->conf->tls == TLS_STARTTLS)
		session_restart(s);
	session_set_timer(s);
	session_flush(s);            /* implicit TLS: the greeting */
}

/* Start TLS on the session's socket: at accept (implicit) or after the
 * 220 to STARTTLS.  What the client said before is forgotten (RFC 3207
 * 4.2): its EHLO, a login, unread bytes.  -1 when the session is gone. */
static int tls_begin(struct petrel_session *s)
{
	s->tls_start_after_flush = false;
	buf_reset(&s->in);
	xfree(&s->helo);
	s->esmtp = false;
	xfree(&s->auth_user);
	s->tls = tls_conn_new(s->l->tls, s->fd);
	if (!s->tls) {
		log_error("%s: cannot start TLS: out of memory", s->peer_name);
		session_close(s, NULL);
		return -1;
	}
	s->tls_handshaking = true;
	s->tls_hs_wants = EV_READ;
	update_events(s);
	return 0;
}

static void on_io(struct ev_loop *loop, int fd, int mask, void *arg)
{
	(void)loop;
	(void)fd;
	struct petrel_session *s = arg;
	if (s->tls_handshaking) {
		tls_step(s);
		return;
	}
	if (mask & (s->tls_write_wants ? s->tls_write_wants : EV_WRITE)) {
		if (!session_flush(s) || s->state == S_CLOSING || s->tls_handshaking)
			return;
		if (s->out_paused && s->out.len < OUTPUT_RESUME) {
			session_process(s);      /* the client read its replies: go on */
			return;
		}
	}
	if (!(mask & (s->tls_read_wants ? s->tls_read_wants : EV_READ)) || s->read_paused || s->tarpit)
		return;
	for (int rounds = 0; rounds < 4; rounds++) {
		buf_reserve(&s->in, READ_CHUNK);
		ssize_t n = wire_read(s, s->in.data + s->in.len, READ_CHUNK);
		if (n == IO_AGAIN)
			break;
		if (n == 0 && !s->tls) {
			/* the end of the client's data: what came before it is
			 * still answered (session_flush closes once it is) */
			s->peer_eof = true;
			break;
		}
		if (n <= 0) {
			session_close(s, "lost connection");
			return;
		}
		s->in.len += (size_t)n;
		if (s->state == S_DATA || s->state == S_BDAT)
			s->rate_bytes += (uint64_t)n;
		/* A TLS record carries at most 16 KiB (READ_CHUNK): a short read
		 * leaves nothing decrypted behind, unless OpenSSL says so. */
		if ((size_t)n < READ_CHUNK && !(s->tls && tls_pending(s->tls)))
			break;
	}
	session_process(s);
}

static const char *state_word(const struct petrel_session *s)
{
	switch (s->state) {
	case S_DATA: return "DATA";
	case S_BDAT: return "BDAT";
	case S_COMMIT: return "END-OF-MESSAGE";
	default: return s->txn ? (s->txn->nrcpt ? "RCPT" : "MAIL") : s->helo ? "EHLO" : "CONNECT";
	}
}

static void session_close(struct petrel_session *s, const char *why)
{
	struct server *srv = s->srv;
	if (s->fd >= 0) {
		if (why)
			log_info("%s after %s from %s", why, state_word(s), s->peer_name);
		char counts[256] = "";
		size_t k = 0;
		for (int v = 1; v <= SMTP_AUTH && k < sizeof counts - 32; v++)
			if (s->ncmds[v]) {
				int w = snprintf(counts + k, sizeof counts - k, " %s=%d", smtp_verb_name(v), s->ncmds[v]);
				if (w > 0)
					k += (size_t)w;
			}
		for (char *p = counts; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
		log_info("disconnect from %s%s", s->peer_name, counts);
		ev_fd_del(srv->loop, s->fd);
		tls_conn_free(&s->tls);
		close(s->fd);
		s->fd = -1;
		ev_timer_stop(srv->loop, &s->timer);
		ev_timer_stop(srv->loop, &s->tarpit_timer);
		s->tarpit = false;
		ev_timer_stop(srv->loop, &s->greet_timer);
		s->greet_wait = false;
	}
	if (s->state == S_COMMIT)
		return;     /* commit_done() finishes the job: the message is queued */
	ev_timer_stop(srv->loop, &s->run.timer);
	s->pending = false;
	txn_free(s);
	chain_session_end(s);
	auth_session_end(s);
	free(s->slots);
	free(s->auth_user);
	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	srv->nsessions--;
	stats_session_open(-1);
	if (s->counted)
		conn_counts_del(&srv->clients, (struct sockaddr *)&s->peer);
	free(s->helo);
	buf_free(&s->in);
	buf_free(&s->out);
	gen_unref(&s->gen);
	free(s);
}

static void peer_format(struct petrel_session *s)
{
	char a[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (s->peer.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&s->peer;
		inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
		port = ntohs(in->sin_port);
	} else if (s->peer.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&s->peer;
		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
		port = ntohs(in6->sin6_port);
	}
	snprintf(s->peer_addr, sizeof s->peer_addr, "%s", a);
	snprintf(s->peer_name, sizeof s->peer_name, "[%s]:%d", a, port);
}

void session_accept(struct server *srv, struct listener *l, int fd)
{
	struct petrel_session *s = xcalloc(1, sizeof *s);
	socklen_t len = sizeof s->peer;
	s->srv = srv;
	s->l = l;
	s->gen = gen_ref(l->gen);
	s->fd = fd;
	if (getpeername(fd, (struct sockaddr *)&s->peer, &len) < 0)
		memset(&s->peer, 0, sizeof s->peer);
	if (s->peer.ss_family == AF_UNIX) {
		/* pickup_socket: who is asking is what the kernel says, and
		 * nothing the client sends; local users may send anywhere, as
		 * Postfix's sendmail/pickup lets them */
		struct ucred cr = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
		socklen_t crl = sizeof cr;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0)
			cr.uid = (uid_t)-1;
		s->local = true;
		s->local_uid = (unsigned)cr.uid;
		snprintf(s->peer_addr, sizeof s->peer_addr, "local:%u", s->local_uid);
		snprintf(s->peer_name, sizeof s->peer_name, "local uid=%u pid=%d", s->local_uid,
		         (int)cr.pid);
		s->may_relay = cr.uid != (uid_t)-1;
	} else {
		peer_format(s);
		s->may_relay = config_may_relay(s->gen->cfg, (struct sockaddr *)&s->peer);
	}
	ev_timer_init(&s->timer, on_timeout, s);
	ev_timer_init(&s->run.timer, NULL, s);
	ev_timer_init(&s->tarpit_timer, on_tarpit, s);
	ev_timer_init(&s->greet_timer, on_greet, s);
	s->next = srv->sessions;
	if (s->next)
		s->next->prev = s;
	srv->sessions = s;
	srv->nsessions++;
	stats_session_open(1);
	log_info("connect from %s", s->peer_name);
	/* Implicit TLS: every reply, the greeting too, waits for the handshake. */
	if (l->conf->tls == TLS_IMPLICIT && tls_begin(s) < 0)
		return;
	if (srv->nsessions > srv->cfg->max_connections) {
		/* at most one warning per FULL_WARN_MS, with the count since */
		uint64_t now = ev_now_ms();
		srv->full_unwarned++;
		if (!srv->full_warned_at || now - srv->full_warned_at >= FULL_WARN_MS) {
			log_warn("max_connections (%d) reached: %lu connection(s) refused with 421 since "
			         "the last warning, the latest from %s", srv->cfg->max_connections,
			         srv->full_unwarned, s->peer_name);
			srv->full_warned_at = now;
			srv->full_unwarned = 0;
		}
		stats_rejected(metrics_listener_slot(l), STATS_REJECT_POLICY);
		session_reply(s, "421 4.7.0 %s Error: too many connections", srv->cfg->hostname);
		s->state = S_CLOSING;
		session_flush(s);
		return;
	}
	/* Postfix's anvil: sessions per client address; relay clients are ours */
	int climit = s->gen->cfg->client_connection_limit;
	if (climit > 0 && !s->may_relay) {
		int n = conn_counts_add(&srv->clients, (struct sockaddr *)&s->peer);
		s->counted = true;
		if (n > climit) {
			conn_counts_del(&srv->clients, (struct sockaddr *)&s->peer);
			s->counted = false;
			log_warn("connection concurrency limit exceeded: %d from %s (client_connection_limit %d)",
			         n, s->peer_name, climit);
			stats_rejected(metrics_listener_slot(l), STATS_REJECT_POLICY);
			session_reply(s, "421 4.7.0 %s Error: too many connections from %s", s->gen->cfg->hostname,
			              s->peer_addr);
			s->state = S_CLOSING;
			session_flush(s);
			return;
		}
	}
	s->in_process = true;       /* step_done must not process yet */
	chain_start(s, STEP_CONNECT);
	s->in_process = false;
	if (s->pending) {
		session_set_timer(s);
		return;
	}
	session_set_timer(s);
	session_flush(s);
}

void sessions_shutdown(struct server *srv)
{
	struct petrel_session *s = srv->sessions, *next;
	for (; s; s = next) {
		next = s->next;
		if (s->state == S_COMMIT) {
			s->closing_after_commit = true;
			continue;
		}
		if (s->state == S_CLOSING || s->fd < 0)
			continue;
		if (s->tls_handshaking || s->out_paused) {    /* no channel for a 421 (yet) */
			session_close(s, "shutdown");
			continue;
		}
		/* A suspended hook is given up: its resume() or pending_timeout
		 * must not find the session (the transaction is gone). */
		ev_timer_stop(srv->loop, &s->run.timer);
		s->pending = false;
		s->run.pending_id = 0;
		ev_timer_stop(srv->loop, &s->tarpit_timer);
		s->tarpit = false;
		ev_timer_stop(srv->loop, &s->greet_timer);
		s->greet_wait = false;
		txn_free(s);
		session_reply(s, "421 4.3.2 %s Service shutting down, closing channel", s->gen->cfg->hostname);
		s->state = S_CLOSING;
		session_flush(s);
	}
}
