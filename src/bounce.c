/*
 * bounce.c - delivery status notifications to the sender (see bounce.h).
 */
#include "bounce.h"
#include "fileio.h"
#include "log.h"
#include "module_load.h"
#include "server.h"
#include "session.h"
#include "spool.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

void bounce_capture_headers(int fd, const struct qmsg *m, struct buf *out)
{
	char chunk[8192];
	off_t pos = m->msg_off;
	while (out->len < HEADERS_MAX && (uint64_t)pos < m->end) {
		size_t want = m->end - (uint64_t)pos < sizeof chunk ? (size_t)(m->end - (uint64_t)pos)
		                                                    : sizeof chunk;
		ssize_t n = pread(fd, chunk, want, pos);
		if (n <= 0)
			break;
		buf_add(out, chunk, (size_t)n);
		pos += n;
		/* the whole buffer again: a CRLFCRLF may straddle two reads, and
		 * the buffer is at most HEADERS_MAX + one chunk */
		size_t end = bounce_header_end(out->data, out->len);
		if (end != SIZE_MAX) {
			out->len = end;
			out->data[out->len] = 0;
			return;
		}
	}
	if (out->len > HEADERS_MAX) {
		out->len = HEADERS_MAX;
		out->data[out->len] = 0;
	}
}

static void rfc5322_date(char *buf, size_t size, time_t t)
{
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, size, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

static void compose(struct server *srv, const struct qmsg *m, const char *qid,
                    const struct buf *headers, struct buf *b)
{
	const char *host = srv->cfg->hostname;
	char date[64], arrival[64];
	rfc5322_date(date, sizeof date, time(NULL));
	rfc5322_date(arrival, sizeof arrival, m->arrival);
	buf_addf(b, "Received: by %s (petrel) id %s; %s\r\n", host, qid, date);
	buf_addf(b, "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n", host);
	buf_adds(b, "To: <");
	buf_add_line(b, m->sender);
	buf_adds(b, ">\r\n");
	buf_adds(b, "Subject: Undelivered Mail Returned to Sender\r\n");
	buf_addf(b, "Date: %s\r\nMessage-ID: <%s.bounce@%s>\r\n", date, qid, host);
	buf_adds(b, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
	buf_addf(b, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	            "\tboundary=\"%s/%s\"\r\n\r\n", qid, host);
	buf_adds(b, "This is a MIME-encapsulated message.\r\n\r\n");
	buf_addf(b, "--%s/%s\r\nContent-Description: Notification\r\n"
	            "Content-Type: text/plain; charset=utf-8\r\n\r\n", qid, host);
	buf_addf(b, "This is the mail system at host %s.\r\n\r\n"
	            "Your message (queue id %s) could not be delivered to one or more\r\n"
	            "recipients. It is attached below.\r\n\r\n", host, m->qid);
	for (int i = 0; i < m->ndests; i++) {
		const struct qdest *d = &m->dests[i];
		if (d->status == Q_BOUNCED && !d->reported) {
			buf_adds(b, "<");
			buf_add_line(b, d->address);
			buf_adds(b, ">: ");
			buf_add_line(b, d->last_error ? d->last_error : "failed");
			buf_adds(b, "\r\n");
		}
	}
	buf_addf(b, "\r\n--%s/%s\r\nContent-Description: Delivery report\r\n"
	            "Content-Type: message/delivery-status\r\n\r\n", qid, host);
	buf_addf(b, "Reporting-MTA: dns; %s\r\nX-Petrel-Queue-ID: %s\r\nArrival-Date: %s\r\n",
	         host, m->qid, arrival);
	for (int i = 0; i < m->ndests; i++) {
		const struct qdest *d = &m->dests[i];
		if (d->status != Q_BOUNCED || d->reported)
			continue;
		/* addresses and reasons are not ours: one line each (buf_add_line) */
		buf_adds(b, "\r\nFinal-Recipient: rfc822; ");
		buf_add_line(b, d->address);
		if (strcmp(d->orig, d->address)) {
			buf_adds(b, "\r\nOriginal-Recipient: rfc822; ");
			buf_add_line(b, d->orig);
		}
		buf_addf(b, "\r\nAction: failed\r\nStatus: %s\r\nDiagnostic-Code: X-Petrel; ",
		         d->expired ? "4.4.7" : "5.0.0");
		buf_add_line(b, d->last_error ? d->last_error : "failed");
		buf_adds(b, "\r\n");
	}
	buf_addf(b, "\r\n--%s/%s\r\nContent-Description: Undelivered Message Headers\r\n"
	            "Content-Type: text/rfc822-headers\r\n\r\n", qid, host);
	if (headers->len)
		buf_add(b, headers->data, headers->len);
	buf_addf(b, "\r\n--%s/%s--\r\n", qid, host);
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


bool bounce_send(struct server *srv, struct qmsg *m, const struct buf *headers, bool retire)
{
	int n = 0;
	bool keep = false;      /* the report failed: the original must stay */
	for (int i = 0; i < m->ndests; i++)
		n += m->dests[i].status == Q_BOUNCED && !m->dests[i].reported;
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
	int rr = srv->router->desc->router->route(srv->router->state, &r, &a);
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
	compose(srv, m, qid, headers, &body);
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
	log_info("%s: sender non-delivery notification: %s", m->qid, qid);
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
	for (int i = 0; i < m->ndests; i++)
		if (m->dests[i].status == Q_BOUNCED)
			m->dests[i].reported = true;
	if (keep && retire)
		log_warn("%s: kept in the queue until its bounce can be queued", m->qid);
	else if (retire)
		retire_original(srv, m);
	return !keep;
}
