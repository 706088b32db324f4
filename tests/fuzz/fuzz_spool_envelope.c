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
 *
 * Then the notes (the last error of each pending destination, written
 * past the valid bytes by spool_write_notes): each pending destination
 * gets its original-recipient field as its error, every other one with
 * the message's bytes after it (so errors longer than SPOOL_NOTE_MAX
 * occur); written onto the file and read back with the envelope.
 * Checked: each pending destination has exactly its error cut at
 * SPOOL_NOTE_MAX bytes, the others none.  Last, the message's bytes
 * themselves are put past the end as the notes' lines, with a header for
 * this queue id and the right CRC (so that the line parser is reached,
 * not only the CRC check): the envelope reads back the same, and an
 * error taken from those lines is never longer than the line it came
 * from nor given to a destination that is not pending.
 */
#include "fuzz_common.h"
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

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

static void check_notes(int fd, struct qmsg *m, const char *msg, size_t msg_len)
{
	for (int i = 0; i < m->ndests; i++) {
		struct qdest *d = &m->dests[i];
		if (d->status != Q_PENDING)
			continue;
		struct buf e = {0};
		buf_add(&e, d->orig, strlen(d->orig));
		if (i % 2) {
			const char *z = memchr(msg, 0, msg_len);
			buf_add(&e, msg, z ? (size_t)(z - msg) : msg_len);
		}
		buf_add(&e, "", 1);
		free(d->last_error);
		d->last_error = e.data;
	}
	if (spool_write_notes(fd, m) < 0)
		fuzz_fail("spool_write_notes failed: %s", strerror(errno));
	const char *why = NULL;
	struct qmsg *r = spool_read_envelope(fd, QID, &why);
	if (!r)
		fuzz_fail("the envelope is refused once notes follow it: %s", why);
	for (int i = 0; i < m->ndests; i++) {
		const struct qdest *a = &m->dests[i], *b = &r->dests[i];
		if (a->status != Q_PENDING) {
			if (b->last_error)
				fuzz_fail("destination %d (%c) got a note: '%s'", i, a->status, b->last_error);
			continue;
		}
		size_t want = strlen(a->last_error);
		if (want > SPOOL_NOTE_MAX)
			want = SPOOL_NOTE_MAX;
		if (!b->last_error || strlen(b->last_error) != want ||
		    memcmp(b->last_error, a->last_error, want))
			fuzz_fail("destination %d: note '%.*s' read back as '%s'", i, (int)want,
			          a->last_error, b->last_error ? b->last_error : "(none)");
	}
	qmsg_free(&r);
}

static void forged_notes(int fd, const struct qmsg *m, const char *msg, size_t msg_len)
{
	struct buf n = {0};
	buf_addf(&n, "PETREL-NOTES %s\n", m->qid);
	buf_add(&n, msg, msg_len);
	if (!n.len || n.data[n.len - 1] != '\n')
		buf_add(&n, "\n", 1);
	struct spool_crc c = {0};
	spool_crc_feed(&c, n.data, n.len);
	buf_addf(&n, "END %08X\n", (unsigned)c.crc);
	if (ftruncate(fd, (off_t)m->end) < 0 ||
	    pwrite(fd, n.data, n.len, (off_t)m->end) != (ssize_t)n.len)
		fuzz_fail("cannot write the forged notes");
	const char *why = NULL;
	struct qmsg *r = spool_read_envelope(fd, QID, &why);
	if (!r)
		fuzz_fail("the envelope is refused once forged notes follow it: %s", why);
	if (r->ndests != m->ndests || r->end != m->end)
		fuzz_fail("forged notes changed the envelope");
	for (int i = 0; i < r->ndests; i++) {
		const struct qdest *b = &r->dests[i];
		if (!b->last_error)
			continue;
		if (b->status != Q_PENDING)
			fuzz_fail("destination %d (%c) got a forged note", i, b->status);
		if (strlen(b->last_error) > msg_len)
			fuzz_fail("destination %d: a note longer than its lines", i);
	}
	qmsg_free(&r);
	buf_free(&n);
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

	m->end = file.len;              /* the notes go where the valid bytes end */
	check_notes(fd, m, msg, msg_len);
	forged_notes(fd, m, msg, msg_len);
	qmsg_free(&m);
	close(fd);
	buf_free(&file);
	return 0;
}
