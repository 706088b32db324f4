/*
 * smtp_data.c - receiving a message: DATA and BDAT content to the spool.
 *
 * DATA content passes through a byte state machine that only ever ends the
 * message at CR LF "." CR LF.  A CR or LF that is not part of a CR LF pair
 * ("bare") never ends a line: it marks the message, which is refused as a
 * whole after the real end (this closes SMTP smuggling: \n.\n, \r.\r and
 * every mix).  Dot-stuffing is undone.  BDAT content is taken as it comes
 * (no dot-stuffing, no end marker), but under the same line rule: only CR
 * LF ends a line, in one chunk or across two, and a bare CR or LF anywhere
 * -- a CR as the very last octet of BDAT LAST included -- refuses the
 * message with the same 554 5.5.2 as DATA (Postfix's
 * smtpd_forbid_bare_newline = reject, for both).  So the header scanner
 * below, the filters' view (msg_edit.c, mime.c, which would also split at
 * a bare LF) and the delivered file always agree on where lines end.
 *
 * While the header section passes, it is scanned once, as it streams:
 * Received: fields are counted (hopcount_limit), and every field's size
 * and the number of fields are held against header_size_limit and
 * header_count_limit.  The section ends at the empty line, or at a line
 * that is neither a field nor a continuation (where msg_edit.c ends it
 * too).  A section over a limit refuses the whole message at its end with
 * 552 5.3.4 and nothing more is written to the queue file.  Refused, not
 * cut: fields past a limit handed on as "body" would still be headers to
 * the reader's mail client, unseen by every header filter (a Subject or
 * From after 10,000 padding fields would evade them all).
 *
 * Bytes are buffered and written to a queue slot as they arrive; nothing
 * is acknowledged until spool_commit() says the file is durable.
 */
#include "smtp_server.h"
#include "generation.h"
#include "fileio.h"
#include "filter_chain.h"
#include "log.h"
#include "metrics.h"
#include "msg_edit.h"
#include "spool.h"
#include "stats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define WBUF_FLUSH (64 * 1024)

/* The reply when the spool cannot take a message: a full disk is "mail
 * system full" (RFC 3463 X.3.1), the rest a queue file error. */
const char *storage_reply(int errnum)
{
	return errnum == ENOSPC || errnum == EDQUOT ? "452 4.3.1 Error: insufficient system storage"
	                                            : "451 4.3.0 Error: queue file write error";
}

static void wbuf_flush(struct petrel_txn *t)
{
	if (!t->io_error && write_all(t->fd, t->wbuf.data, t->wbuf.len) < 0) {
		t->io_errno = errno;
		log_error("%s: queue file write error: %m", t->qid);
		t->io_error = true;
	}
	buf_reset(&t->wbuf);
}

static void put_raw(struct petrel_txn *t, const char *p, size_t n)
{
	buf_add(&t->wbuf, p, n);
	if (t->wbuf.len >= WBUF_FLUSH)
		wbuf_flush(t);
}

/* Is the content still going to the queue file? */
static bool storing(const struct petrel_txn *t)
{
	return !t->too_big && !t->hdr_refuse;
}

/* Message content (not CR LF line ends). */
static void put_content(struct petrel_session *s, const char *p, size_t n)
{
	struct petrel_txn *t = s->txn;
	if (n == 0)
		return;
	if (t->in_headers) {
		if (t->hdr_line == 0) {         /* the first octets of a line */
			t->hdr_cont = p[0] == ' ' || p[0] == '\t';
			t->hdr_colon = false;
		}
		t->hdr_line += n;
		if (!t->hdr_colon && memchr(p, ':', n))
			t->hdr_colon = true;
		if (t->hdr_len < 9) {
			size_t k = n < (size_t)(9 - t->hdr_len) ? n : (size_t)(9 - t->hdr_len);
			memcpy(t->hdr_start + t->hdr_len, p, k);
			t->hdr_len += (int)k;
		}
	}
	t->size += n;
	if (t->size > s->gen->cfg->message_size_limit)
		t->too_big = true;
	if (storing(t))
		put_raw(t, p, n);
}

/* A header line ended (its CR LF not counted in hdr_line yet). */
static void header_line_end(struct petrel_session *s)
{
	struct petrel_txn *t = s->txn;
	const struct config *cfg = s->gen->cfg;
	if (t->hdr_line == 0) {
		t->in_headers = false;          /* the empty line */
	} else if (!t->hdr_cont && !t->hdr_colon) {
		t->in_headers = false;          /* not a header field: the body starts */
	} else {
		if (!t->hdr_cont || t->hdr_fields == 0) {
			t->hdr_fields++;        /* a stray first continuation counts as one */
			t->hdr_field_len = 0;
		}
		t->hdr_field_len += t->hdr_line + 2;
		if (!t->hdr_cont && t->hdr_len >= 9 && strncasecmp(t->hdr_start, "received:", 9) == 0)
			t->received++;
		if (t->hdr_field_len > cfg->header_size_limit)
			t->hdr_refuse = "552 5.3.4 Error: message header field too large";
		else if (t->hdr_fields > cfg->header_count_limit)
			t->hdr_refuse = "552 5.3.4 Error: too many message header fields";
		if (t->hdr_refuse)
			t->in_headers = false;  /* judged: the rest is only counted */
	}
	t->hdr_len = 0;
	t->hdr_line = 0;
}

static void line_end(struct petrel_session *s)
{
	struct petrel_txn *t = s->txn;
	if (t->in_headers)
		header_line_end(s);
	t->size += 2;
	if (t->size > s->gen->cfg->message_size_limit)
		t->too_big = true;
	if (storing(t))
		put_raw(t, "\r\n", 2);
}

/* The "with" word (RFC 3848, RFC 6531): ESMTP, plus S under TLS and A
 * after AUTH; UTF8SMTP the same way; plain SMTP after HELO. */
static const char *with_protocol(const struct petrel_session *s)
{
	static const char *const words[2][4] = {
		{ "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA" },
		{ "UTF8SMTP", "UTF8SMTPS", "UTF8SMTPA", "UTF8SMTPSA" },
	};
	if (!s->esmtp)
		return "SMTP";
	return words[s->txn->smtputf8][(s->tls ? 1 : 0) + (s->auth_user ? 2 : 0)];
}

static void received_header(struct petrel_session *s, struct buf *b)
{
	struct petrel_txn *t = s->txn;
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (s->local) {
		/* as Postfix's pickup: the uid is the kernel's word, the HELO
		 * and the envelope are the user's and say nothing here */
		buf_addf(b, "Received: by %s (petrel, from userid %u)\r\n\tid %s; %s\r\n",
		         s->gen->cfg->hostname, s->local_uid, t->qid, date);
		return;
	}
	buf_addf(b, "Received: from %s ([%s])\r\n", s->helo ? s->helo : "unknown", s->peer_addr);
	if (s->tls)
		buf_addf(b, "\t(using %s)\r\n", s->tls_info);
	buf_addf(b, "\tby %s (petrel) with %s id %s", s->gen->cfg->hostname, with_protocol(s), t->qid);
	if (t->nrcpt == 1)
		buf_addf(b, "\r\n\tfor <%s>; %s\r\n", t->rcpts[0].str, date);
	else
		buf_addf(b, ";\r\n\t%s\r\n", date);
}

int data_begin(struct petrel_session *s, const char **reply)
{
	struct petrel_txn *t = s->txn;
	const char *err;
	t->fd = spool_create(s->srv->spool, t->qm, &err);
	if (t->fd < 0) {
		int e = errno;
		log_error("%s: cannot create queue file: %s", t->qid, err);
		*reply = storage_reply(e);
		return -1;
	}
	struct timeval tv;
	gettimeofday(&tv, NULL);
	t->qm->arrival = tv.tv_sec;
	t->qm->arrival_precise = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
	spool_envelope(&t->wbuf, t->qm);
	received_header(s, &t->wbuf);
	t->dstate = D_LINE_START;
	t->in_headers = true;
	t->hdr_len = 0;
	t->hdr_line = 0;
	t->hdr_fields = 0;
	t->hdr_field_len = 0;
	t->hdr_refuse = NULL;
	s->data_deadline = ev_now_ms() + (uint64_t)s->gen->cfg->data_timeout * 1000;
	return 0;
}

int data_consume(struct petrel_session *s)
{
	struct petrel_txn *t = s->txn;
	const char *p = s->in.data;
	size_t len = s->in.len, pos = 0;
	int ended = 0;
	while (pos < len && !ended) {
		char c = p[pos];
		switch (t->dstate) {
		case D_LINE_START:
			if (c == '.') {
				t->dstate = D_DOT;
				pos++;
			} else {
				t->dstate = D_MID;
			}
			break;
		case D_DOT:
			if (c == '\r') {
				t->dstate = D_DOT_CR;
				pos++;
			} else {
				t->dstate = D_MID;   /* the dot was stuffing: dropped */
			}
			break;
		case D_DOT_CR:
			if (c == '\n') {
				pos++;
				ended = 1;
			} else {
				t->bare = true;      /* ".\r" + not LF: bare CR */
				put_content(s, "\r", 1);
				t->dstate = D_MID;
			}
			break;
		case D_MID: {
			size_t i = pos;
			while (i < len && p[i] != '\r' && p[i] != '\n')
				i++;
			put_content(s, p + pos, i - pos);
			pos = i;
			if (i < len) {
				if (p[i] == '\n') {
					t->bare = true;
					put_content(s, "\n", 1);
				} else {
					t->dstate = D_CR;
				}
				pos++;
			}
			break;
		}
		case D_CR:
			if (c == '\n') {
				line_end(s);
				t->dstate = D_LINE_START;
				pos++;
			} else {
				t->bare = true;
				put_content(s, "\r", 1);
				t->dstate = D_MID;
			}
			break;
		}
	}
	buf_consume(&s->in, pos);
	return ended;
}

int bdat_consume(struct petrel_session *s)
{
	size_t n = s->in.len < s->bdat_left ? s->in.len : (size_t)s->bdat_left;
	struct petrel_txn *t = s->bdat_discard ? NULL : s->txn;
	if (t) {
		/* DATA's line rule without its dot: CR LF ends a line (the
		 * pair may straddle two chunks), a bare CR or LF marks the
		 * message, which data_end() refuses. */
		const char *p = s->in.data;
		size_t pos = 0;
		while (pos < n) {
			if (t->dstate == D_CR) {
				t->dstate = D_MID;
				if (p[pos] == '\n') {
					line_end(s);
					t->dstate = D_LINE_START;
					pos++;
					continue;
				}
				t->bare = true;
				put_content(s, "\r", 1);
			}
			size_t i = pos;
			while (i < n && p[i] != '\r' && p[i] != '\n')
				i++;
			put_content(s, p + pos, i - pos);
			t->dstate = D_MID;
			if (i < n) {
				if (p[i] == '\n') {
					t->bare = true;
					put_content(s, "\n", 1);
				} else {
					t->dstate = D_CR;
				}
				i++;
			}
			pos = i;
		}
	}
	buf_consume(&s->in, n);
	s->bdat_left -= n;
	return s->bdat_left == 0;
}

static void commit_done(void *arg, int ok, int errnum, const char *err)
{
	struct petrel_session *s = arg;
	struct petrel_txn *t = s->txn;
	struct server *srv = s->srv;
	if (ok) {
		log_info("%s: client=%s, from=<%s>, size=%llu, nrcpt=%d (%s)", t->qid,
		         s->peer_name, t->sender.str, (unsigned long long)t->size, t->nrcpt,
		         t->hold ? "held" : "queue active");
		srv->counter_accepted++;
		stats_received(metrics_listener_slot(s->l), t->size);
		stats_bytes_in(t->size);
		if (s->fd >= 0)
			session_reply(s, "250 2.0.0 Ok: queued as %s", t->qid);
		session_mail_delivered(s);
		t->qm->size = t->size;
		chain_queued(s, t);
		if (!t->hold) {
			queue_add(srv->queue, t->qm);
			t->qm = NULL;
		}
	} else {
		log_error("%s: cannot queue message: %s", t->qid, err);
		if (s->fd >= 0)
			session_reply(s, "%s", storage_reply(errnum));
	}
	t->fd = -1;
	txn_free(s);
	s->state = S_CMD;
	if (s->fd < 0 || s->closing_after_commit) {
		if (s->fd >= 0)
			session_reply(s, "421 4.3.2 %s Service shutting down, closing channel",
			              s->gen->cfg->hostname);
		s->state = S_CLOSING;
	}
	session_set_timer(s);
	if (s->fd >= 0 && s->state == S_CMD)
		session_process(s);    /* pipelined input waiting behind the dot */
	else
		(void)session_flush(s);  /* may free s */
}

/* Refuse the message, counted under WHY (stats.h). */
static void refuse_as(struct petrel_session *s, enum stats_reject_reason why, const char *reply)
{
	struct petrel_txn *t = s->txn;
	stats_rejected(metrics_listener_slot(s->l), why);
	log_info("%s: reject: %s from %s: %s; from=<%s> size=%llu", t->qid,
	         t->in_bdat ? "BDAT" : "DATA", s->peer_name, reply, t->sender.str,
	         (unsigned long long)t->size);
	session_reply(s, "%s", reply);
	txn_free(s);     /* removes the incomplete file */
	s->state = S_CMD;
}

static void refuse(struct petrel_session *s, const char *reply)
{
	refuse_as(s, stats_reject_reason_of(s->txn->in_bdat ? "BDAT" : "DATA", reply), reply);
}

void data_end(struct petrel_session *s)
{
	struct petrel_txn *t = s->txn;
	struct config *cfg = s->gen->cfg;
	const char *why = NULL, *err;
	if (t->dstate == D_CR) {
		/* BDAT LAST ended on a CR: no LF can follow, it is bare (DATA
		 * cannot end there) */
		t->bare = true;
		t->dstate = D_MID;
	}
	if (storing(t))
		wbuf_flush(t);
	if (t->too_big)
		why = "552 5.3.4 Error: message file too big";
	else if (t->bare)
		why = "554 5.5.2 Error: bare <CR> or <LF> in message content";
	else if (t->hdr_refuse)
		why = t->hdr_refuse;
	else if (t->received > cfg->hopcount_limit)
		why = "554 5.4.6 Error: too many hops (mail loop?)";
	else if (t->io_error)
		why = storage_reply(t->io_errno);
	if (why) {
		refuse(s, why);
		return;
	}
	if (chain_wants_message(s)) {
		if (msg_load(t, &err) < 0) {
			log_error("%s: cannot read the message back for filters: %s", t->qid, err);
			refuse(s, "451 4.3.0 Error: queue file read error");
			return;
		}
		/* MIME part headers are parsed only for filters, and held to the
		 * same limits there (a part's Content-Type behind 10,000 padding
		 * fields would be the same evasion as the top level's) */
		int part = msg_part_over_limit(t, cfg->header_size_limit, cfg->header_count_limit, &why);
		if (part >= 0) {
			log_info("%s: MIME part %d: header section over header_size_limit or "
			         "header_count_limit", t->qid, part);
			refuse(s, why);
			return;
		}
	}
	chain_start(s, STEP_MESSAGE);
}

void message_done(struct petrel_session *s, int v)
{
	struct petrel_txn *t = s->txn;
	const char *err;
	char buf[512];
	if (v == PETREL_REJECT || v == PETREL_TEMPFAIL) {
		snprintf(buf, sizeof buf, "%s", t->reply[0] ? t->reply
		         : v == PETREL_REJECT ? "550 5.7.1 Message rejected" : "451 4.7.1 Try again later");
		refuse_as(s, STATS_REJECT_FILTER, buf);
		return;
	}
	int pending = 0;
	for (int i = 0; i < t->qm->ndests; i++)
		pending += t->qm->dests[i].status == Q_PENDING;
	if (!t->discard && !pending && t->nrcpt) {
		/* recipients and nowhere to deliver: a bookkeeping bug, never
		 * a reason to acknowledge and drop the message */
		log_error("%s: %d recipient(s) but no destination: temporary failure", t->qid, t->nrcpt);
		refuse(s, "451 4.3.0 Error: no destination for the recipients, try again later");
		return;
	}
	if (t->discard || !pending) {
		log_info("%s: discard: from %s: %s; from=<%s> size=%llu nrcpt=%d", t->qid, s->peer_name,
		         t->discard ? "by filter" : "no recipients left", t->sender.str,
		         (unsigned long long)t->size, t->nrcpt);
		session_reply(s, "250 2.0.0 Ok: queued as %s", t->qid);
		session_mail_delivered(s);     /* to the client, as good as delivered */
		txn_free(s);
		s->state = S_CMD;
		return;
	}
	if (msg_rewrite(t, s->srv->spool, &err) < 0) {
		int e = errno;
		log_error("%s: cannot apply filter changes: %s", t->qid, err);
		refuse(s, storage_reply(e));
		return;
	}
	msg_free(t);
	if (t->hold)
		log_info("%s: hold: by filter; from=<%s>", t->qid, t->sender.str);
	s->state = S_COMMIT;
	int fd = t->fd;
	t->fd = -1;
	spool_commit(s->srv->spool, t->qm, fd, t->hold, commit_done, s);
}
