/*
 * bounce.c - delivery status notifications to the sender (see bounce.h):
 * failures, delays and successes of one message in one RFC 3464 report.
 */
#include "bounce.h"
#include "fileio.h"
#include "log.h"
#include "module_load.h"
#include "server.h"
#include "generation.h"
#include "session.h"
#include "smtp_parse.h"
#include "spool.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define HEADERS_MAX (64 * 1024)

size_t bounce_header_end(const char *data, size_t len)
{
	if (len >= 2 && data[0] == '\r' && data[1] == '\n')
		return 0;                      /* no header section at all */
	/* the message's bytes may hold a NUL: lengths, never strstr */
	const char *end = len >= 4 ? memmem(data, len, "\r\n\r\n", 4) : NULL;
	return end ? (size_t)(end - data) + 2 : SIZE_MAX;
}

/* The content of m from fd into out: all of it, or (headers_only) its
 * header section, at most HEADERS_MAX bytes.  A read error or a file
 * shorter than the record says ends it early: -1 with errno set (0 for a
 * short file), out holding what was read. */
static int capture(int fd, const struct qmsg *m, bool headers_only, struct buf *out)
{
	char chunk[65536];
	off_t pos = m->msg_off;
	while ((!headers_only || out->len < HEADERS_MAX) && (uint64_t)pos < m->end) {
		size_t want = m->end - (uint64_t)pos < sizeof chunk ? (size_t)(m->end - (uint64_t)pos)
		                                                    : sizeof chunk;
		ssize_t n = pread(fd, chunk, want, pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = 0;      /* the file ends before the record says */
			return -1;
		}
		buf_add(out, chunk, (size_t)n);
		pos += n;
		if (!headers_only)
			continue;
		/* the whole buffer again: a CRLFCRLF may straddle two reads, and
		 * the buffer is at most HEADERS_MAX + one chunk */
		size_t end = bounce_header_end(out->data, out->len);
		if (end != SIZE_MAX) {
			out->len = end;
			out->data[out->len] = 0;
			return 0;
		}
	}
	if (headers_only && out->len > HEADERS_MAX) {
		out->len = HEADERS_MAX;
		out->data[out->len] = 0;
	}
	return 0;
}

int bounce_capture_headers(int fd, const struct qmsg *m, struct buf *out)
{
	return capture(fd, m, true, out);
}

int bounce_capture_message(int fd, const struct qmsg *m, struct buf *out)
{
	return capture(fd, m, false, out);
}

static void rfc5322_date(char *buf, size_t size, time_t t)
{
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, size, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* "550 5.1.1 text" -> its enhanced code, else the given default. */
static void status_code(const char *text, const char *dflt, char out[16])
{
	int a, b, c, n = 0;
	const char *p = text;
	if (p && strlen(p) > 4 && p[0] >= '2' && p[0] <= '5' && p[3] == ' ')
		p += 4;
	if (p && sscanf(p, "%1d.%3d.%3d%n", &a, &b, &c, &n) == 3 && n > 0 && a >= 2 && a <= 5)
		snprintf(out, 16, "%d.%d.%d", a, b, c);
	else
		snprintf(out, 16, "%s", dflt);
}

static bool is_smtp_reply(const char *t)
{
	return t && t[0] >= '2' && t[0] <= '5' && t[1] >= '0' && t[1] <= '9' && t[2] >= '0' &&
	       t[2] <= '9' && t[3] == ' ';
}

/* "mx.example.test[127.0.0.2]:25" -> "mx.example.test" */
static void remote_mta(const char *relay, char *out, size_t size)
{
	size_t n = strcspn(relay, "[");
	if (n == 0) {
		n = strcspn(relay, "]");
		snprintf(out, size, "%.*s", (int)(n > 1 ? n - 1 : 0), relay + 1);
		return;
	}
	snprintf(out, size, "%.*s", (int)n, relay);
}

static void xtext_line(struct buf *b, const char *name, const char *x)
{
	char dec[600];
	if (x && smtp_xtext_decode(x, strlen(x), dec, sizeof dec) >= 0 && !strpbrk(dec, "\r\n"))
		buf_addf(b, "%s%s\r\n", name, dec);
}

static void compose(struct server *srv, const struct qmsg *m, const char *qid,
                    const struct buf *content, bool warn, bool full, struct buf *b)
{
	const char *host = srv->cfg->hostname;
	char date[64], arrival[64];
	int nf = 0, nw = 0, ns = 0;
	for (int i = 0; i < m->ndests; i++) {
		char a = qdest_report_action(&m->dests[i], warn);
		nf += a == 'f';
		nw += a == 'w';
		ns += a == 'd' || a == 'r';
	}
	rfc5322_date(date, sizeof date, time(NULL));
	rfc5322_date(arrival, sizeof arrival, m->arrival);
	/* The boundary must not occur in what is returned (RFC 2046 5.1.1):
	 * the returned message is the sender's, who could otherwise add
	 * parts to the report.  "QID/host", else "QID/host/" and 128 random
	 * bits, which the content cannot have guessed (a few tries at most,
	 * each one linear search: no attacker-driven loop). */
	char bnd[320];
	snprintf(bnd, sizeof bnd, "%s/%s", qid, host);
	for (int k = 0; content->len && k < 4; k++) {
		char dash[324];
		int dn = snprintf(dash, sizeof dash, "--%s", bnd);
		if (dn < 0 || !memmem(content->data, content->len, dash, (size_t)dn))
			break;
		unsigned char r[16];
		if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
			for (size_t i = 0; i < sizeof r; i++)
				r[i] = (unsigned char)(rand() ^ (int)(i * 131 + (unsigned)k));
		int o = snprintf(bnd, sizeof bnd, "%s/%s/", qid, host);
		for (size_t i = 0; i < sizeof r && o > 0 && (size_t)o + 3 < sizeof bnd; i++)
			o += snprintf(bnd + o, sizeof bnd - (size_t)o, "%02x", r[i]);
	}
	buf_addf(b, "Received: by %s (petrel) id %s; %s\r\n", host, qid, date);
	buf_addf(b, "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n", host);
	buf_adds(b, "To: <");
	buf_add_line(b, m->sender);
	buf_adds(b, ">\r\n");
	buf_addf(b, "Subject: %s\r\n", nf ? "Undelivered Mail Returned to Sender"
	                               : nw ? "Delayed Mail (still being retried)"
	                                    : "Successful Mail Delivery Report");
	buf_addf(b, "Date: %s\r\nMessage-ID: <%s.bounce@%s>\r\n", date, qid, host);
	buf_adds(b, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
	buf_addf(b, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	            "\tboundary=\"%s\"\r\n\r\n", bnd);
	buf_adds(b, "This is a MIME-encapsulated message.\r\n\r\n");
	buf_addf(b, "--%s\r\nContent-Description: Notification\r\n"
	            "Content-Type: text/plain; charset=utf-8\r\n\r\n", bnd);
	buf_addf(b, "This is the mail system at host %s.\r\n\r\n", host);
	if (nf)
		buf_addf(b, "Your message (queue id %s) could not be delivered to one or more\r\n"
		            "recipients. It is attached below.\r\n\r\n", m->qid);
	if (nw)
		buf_addf(b, "Your message (queue id %s) could not be delivered yet to one or more\r\n"
		            "recipients; delivery is still being tried.\r\n\r\n", m->qid);
	if (ns)
		buf_addf(b, "Your message (queue id %s) was delivered or relayed to the\r\n"
		            "recipients below, as you asked.\r\n\r\n", m->qid);
	for (int i = 0; i < m->ndests; i++) {
		const struct qdest *d = &m->dests[i];
		char a = qdest_report_action(d, warn);
		if (a) {
			/* addresses and reasons are not ours: one line each (buf_add_line) */
			buf_adds(b, "<");
			buf_add_line(b, d->address);
			buf_addf(b, ">: %s", a == 'r' ? "relayed to a server without DSN: " : "");
			buf_add_line(b, d->last_error ? d->last_error : a == 'f' ? "failed" : "");
			buf_adds(b, "\r\n");
		}
	}
	buf_addf(b, "\r\n--%s\r\nContent-Description: Delivery report\r\n"
	            "Content-Type: message/delivery-status\r\n\r\n", bnd);
	buf_addf(b, "Reporting-MTA: dns; %s\r\nX-Petrel-Queue-ID: %s\r\n", host, m->qid);
	xtext_line(b, "Original-Envelope-Id: ", m->envid);
	buf_addf(b, "Arrival-Date: %s\r\n", arrival);
	for (int i = 0; i < m->ndests; i++) {
		const struct qdest *d = &m->dests[i];
		char a = qdest_report_action(d, warn), code[16];
		if (!a)
			continue;
		buf_adds(b, "\r\nFinal-Recipient: rfc822; ");
		buf_add_line(b, d->address);
		buf_adds(b, "\r\n");
		if (d->orcpt)
			xtext_line(b, "Original-Recipient: ", d->orcpt);
		else if (strcmp(d->orig, d->address))
		{
			buf_adds(b, "Original-Recipient: rfc822; ");
			buf_add_line(b, d->orig);
			buf_adds(b, "\r\n");
		}
		status_code(d->last_error, a == 'f' ? (d->expired ? "4.4.7" : "5.0.0")
		                           : a == 'w' ? "4.0.0" : "2.0.0", code);
		if (a == 'f' && d->expired && code[0] != '5')
			snprintf(code, sizeof code, "4.4.7");
		buf_addf(b, "Action: %s\r\nStatus: %s\r\n", a == 'f' ? "failed" : a == 'w' ? "delayed"
		                                           : a == 'r' ? "relayed" : "delivered", code);
		if (d->relay && strchr(d->relay, '[')) {
			char mta[256];
			remote_mta(d->relay, mta, sizeof mta);
			if (mta[0])
				buf_addf(b, "Remote-MTA: dns; %s\r\n", mta);
		}
		if (d->last_error) {
			buf_addf(b, "Diagnostic-Code: %s; ", is_smtp_reply(d->last_error) ? "smtp"
			         : "X-Petrel");
			buf_add_line(b, d->last_error);
			buf_adds(b, "\r\n");
		}
		if (a == 'w') {
			char until[64];
			rfc5322_date(until, sizeof until, m->arrival + srv->cfg->queue_lifetime);
			buf_addf(b, "Will-Retry-Until: %s\r\n", until);
		}
	}
	if (full) {
		buf_addf(b, "\r\n--%s\r\nContent-Description: Undelivered Message\r\n"
		            "Content-Type: message/rfc822\r\n\r\n", bnd);
	} else {
		buf_addf(b, "\r\n--%s\r\nContent-Description: %s\r\n"
		            "Content-Type: text/rfc822-headers\r\n\r\n", bnd,
		         nf ? "Undelivered Message Headers" : "Message Headers");
	}
	if (content->len)
		buf_add(b, content->data, content->len);
	if (content->len < 2 || memcmp(content->data + content->len - 2, "\r\n", 2))
		buf_adds(b, "\r\n");
	buf_addf(b, "\r\n--%s--\r\n", bnd);
}

/* The original's queue file goes once its report is durable, not before:
 * a crash in between finds the bounced destinations in the file and
 * reports them again, where the other order would lose the report. */
struct report {
	struct qmsg *b;          /* the report, being committed */
	struct qmsg *orig;       /* qid and slot of the original, or NULL */
};

static void retire_original(struct server *srv, struct qmsg *orig)
{
	if (spool_retire(srv->spool, orig, -1) < 0)
		log_error("%s: cannot remove queue file: %m", orig->qid);
	else
		log_info("%s: removed", orig->qid);
}

static void bounce_committed(void *arg, int ok, int errnum, const char *err)
{
	struct report *rp = arg;
	struct qmsg *b = rp->b;
	struct server *srv = b->srv;
	(void)errnum;
	if (!ok) {
		log_error("%s: bounce could not be queued: %s", b->qid, err);
		if (rp->orig)
			log_warn("%s: kept in the queue until its bounce can be queued (next start)",
			         rp->orig->qid);
		qmsg_free(&b);
	} else {
		log_info("%s: from=<>, size=%llu, nrcpt=1 (queue active)", b->qid,
		         (unsigned long long)b->size);
		queue_add(srv->queue, b);
		if (rp->orig)
			retire_original(srv, rp->orig);
	}
	qmsg_free(&rp->orig);
	free(rp);
}


bool bounce_send(struct server *srv, struct qmsg *m, const struct buf *headers, bool retire,
                 bool warn, bool full)
{
	int n = 0;
	bool keep = false;      /* the report failed: the original must stay */
	for (int i = 0; i < m->ndests; i++)
		n += qdest_report_action(&m->dests[i], warn) != 0;
	if (!n)
		goto reported;
	if (!m->sender[0]) {
		log_info("%s: no bounce: the sender is <>", m->qid);
		goto reported;
	}
	char qid[QID_MAX];
	spool_new_qid(srv->spool, qid);
	struct qmsg *b = qmsg_new(qid, "", time(NULL));
	b->srv = srv;
	struct petrel_addr a = { .str = m->sender };
	if (addr_split(m->sender, &a.local, &a.domain) < 0) {
		log_warn("%s: no bounce: sender <%s> is not an address", m->qid, m->sender);
		qmsg_free(&b);
		goto reported;
	}
	struct petrel_route r = { .qm = b, .rcpt = &a, .srv = srv };
	int rr = srv->gen->router->desc->router->route(srv->gen->router->state, &r, &a);
	free(a.local);
	free(a.domain);
	if (rr != PETREL_ROUTE_OK || !b->ndests) {
		log_warn("%s: no bounce: sender <%s> cannot be routed", m->qid, m->sender);
		qmsg_free(&b);
		goto reported;
	}
	const char *err;
	int fd = spool_create(srv->spool, b, &err);
	if (fd < 0) {
		log_error("%s: bounce for %s not written: %s", qid, m->qid, err);
		qmsg_free(&b);
		keep = true;
		goto reported;
	}
	struct buf body = {0}, file = {0};
	compose(srv, m, qid, headers, warn, full, &body);
	spool_envelope(&file, b);
	buf_add(&file, body.data, body.len);
	b->size = body.len;
	int wr = write_all(fd, file.data, file.len);
	buf_free(&body);
	buf_free(&file);
	if (wr < 0) {
		log_error("%s: bounce for %s not written: %m", qid, m->qid);
		spool_abort(srv->spool, b->slot, fd);
		qmsg_free(&b);
		keep = true;
		goto reported;
	}
	int nf = 0, nw = 0;
	for (int i = 0; i < m->ndests; i++) {
		char act = qdest_report_action(&m->dests[i], warn);
		nf += act == 'f';
		nw += act == 'w';
	}
	log_info("%s: sender %s notification: %s", m->qid,
	         nf ? "non-delivery" : nw ? "delay" : "success", qid);
	struct report *rp = xcalloc(1, sizeof *rp);
	rp->b = b;
	if (retire) {           /* a copy: m may be gone when the commit ends */
		rp->orig = qmsg_new(m->qid, "", 0);
		rp->orig->slot = m->slot;
		rp->orig->end = m->end;
		retire = false;
	}
	spool_commit(srv->spool, b, fd, false, bounce_committed, rp);
reported:
	for (int i = 0; i < m->ndests; i++) {
		if (m->dests[i].status == Q_BOUNCED)
			m->dests[i].reported = true;
		m->dests[i].success = 0;
	}
	if (keep && retire)
		log_warn("%s: kept in the queue until its bounce can be queued", m->qid);
	else if (retire)
		retire_original(srv, m);
	return !keep;
}
