/*
 * fuzz_spool_envelope.c - libFuzzer harness for the queue file envelope
 * (src/spool.c spool_envelope() writes it, src/spool_recover.c
 * spool_read_envelope() reads it back) as a round trip.
 *
 * Input: 8 bytes of arrival time, then NUL-separated fields: the sender,
 * then (transport, address, original recipient) for each destination;
 * a last field after an empty one is the message.  Fields are arbitrary
 * bytes: CR, LF, TAB, backslash, invalid UTF-8, "\nE\n", "\nD"... (NUL
 * itself ends a C string, so it is where a field stops).  A destination
 * is added with qmsg_add_dest(), as the session and the router do, so an
 * address that is not one is left out (the reader checks them the same
 * way); its status cycles P, D, B.
 *
 * The file is built as the spool builds it (envelope, message, seal) in
 * an anonymous file, and read back.  Checked: the reader accepts it and
 * gives back the same queue id, arrival, sender and destinations
 * (transport, address, original, status, and the offset of each status
 * byte, which the queue rewrites in place), the message offset and
 * size; and the status byte at each recorded offset is that status.
 */
#include "fuzz_common.h"
#include "spool.h"

#include <fcntl.h>

static const char QID[] = "0000000000ABCDEF0000";

/* Next NUL-terminated field of [*p, end); NULL when none is left. */
static char *field(const char **p, const char *end)
{
	if (*p >= end)
		return NULL;
	const char *z = memchr(*p, 0, (size_t)(end - *p));
	size_t n = z ? (size_t)(z - *p) : (size_t)(end - *p);
	char *s = malloc(n + 1);
	memcpy(s, *p, n);
	s[n] = 0;
	*p += n + (z ? 1 : 0);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 8)
		return 0;
	int64_t arrival;
	memcpy(&arrival, data, 8);
	const char *p = (const char *)data + 8, *end = (const char *)data + size;
	char *sender = field(&p, end);
	if (!sender)
		return 0;
	struct qmsg *m = qmsg_new(QID, sender, (time_t)arrival);
	free(sender);
	const char *msg = "";
	size_t msg_len = 0;
	static const char st[] = { Q_PENDING, Q_DELIVERED, Q_BOUNCED };
	for (int i = 0; p < end && i < 64; i++) {
		char *tr = field(&p, end);
		if (!*tr) {                  /* an empty field: the message follows */
			free(tr);
			msg = p;
			msg_len = (size_t)(end - p);
			break;
		}
		char *addr = field(&p, end), *orig = field(&p, end);
		struct qdest *d = addr && orig ? qmsg_add_dest(m, tr, addr, orig) : NULL;
		if (d)
			d->status = st[m->ndests % 3];
		free(tr);
		free(addr);
		free(orig);
	}

	struct buf file = {0};
	spool_envelope(&file, m);
	buf_add(&file, msg, msg_len);
	spool_seal_buf(file.data, file.len, 'Q');
	for (int i = 0; i < m->ndests; i++)
		file.data[m->dests[i].status_off] = m->dests[i].status;
	/* spool_seal_buf counted every status as P, as the spool does */
	int fd = fuzz_memfd(file.data, file.len);

	const char *why = NULL;
	struct qmsg *r = spool_read_envelope(fd, QID, &why);
	if (!r)
		fuzz_fail("spool_read_envelope refused what spool_envelope wrote: %s", why);
	if (strcmp(r->qid, m->qid) || r->arrival != m->arrival)
		fuzz_fail("queue id or arrival changed");
	if (strcmp(r->sender, m->sender))
		fuzz_fail("sender changed: '%s' read back as '%s'", m->sender, r->sender);
	if (r->ndests != m->ndests)
		fuzz_fail("%d destinations written, %d read back", m->ndests, r->ndests);
	for (int i = 0; i < m->ndests; i++) {
		const struct qdest *a = &m->dests[i], *b = &r->dests[i];
		if (strcmp(a->transport, b->transport) || strcmp(a->address, b->address) ||
		    strcmp(a->orig, b->orig) || a->status != b->status)
			fuzz_fail("destination %d changed: '%s' '%s' '%s' %c read back as '%s' '%s' '%s' %c",
			          i, a->transport, a->address, a->orig, a->status, b->transport,
			          b->address, b->orig, b->status);
		if (a->status_off != b->status_off)
			fuzz_fail("destination %d: status offset %lld written, %lld read", i,
			          (long long)a->status_off, (long long)b->status_off);
		if (file.data[b->status_off] != b->status)
			fuzz_fail("destination %d: the byte at the status offset is not the status", i);
	}
	if (r->msg_off != m->msg_off || r->size != msg_len || r->end != file.len)
		fuzz_fail("message offset or size changed");
	qmsg_free(&r);
	qmsg_free(&m);
	close(fd);
	buf_free(&file);
	return 0;
}
