/*
 * fuzz_bounce.c - libFuzzer harness for the DSN generator (src/bounce.c):
 * the header capture from a queue file and the report it composes.
 *
 * src/bounce.c is included, so its static compose() is reachable without
 * a server, router or spool (the archive of core objects then supplies
 * everything else, and no second bounce.o).  If compose() changes its
 * signature, this file follows.
 *
 * Input: NUL-separated fields: the sender, then pairs (address, reason)
 * of bounced destinations (a reason is what a transport says, in future
 * a remote server's reply text: not trusted), then after an empty field
 * the queued message.  The message goes into an anonymous file behind an
 * envelope, as in the spool.
 *
 * Checked:
 *   - bounce_capture_headers() gives the message's header section: the
 *     bytes up to and including the CRLF that ends the last field (before
 *     the first CRLF CRLF), or, with no such end, a prefix of the
 *     message of at most 64 KiB; never bytes that are not the message's;
 *   - the report parses as MIME with exactly the structure RFC 3464 asks
 *     for: multipart/report with three parts (text/plain, then
 *     message/delivery-status, then text/rfc822-headers), whatever the
 *     addresses, reasons and headers hold: nothing from the message or a
 *     transport can add a part or a header field to the report;
 *   - every header field of the report is one of those compose() writes.
 *
 * CR and LF stay in the sender, addresses and reasons (compose() writes
 * them through buf_add_line(), which makes each one line; the finding that
 * showed they could add a header field is the seed
 * tests/fuzz/corpus/bounce/sender-lf-injects-header).  FUZZ_BOUNCE_CLEAN
 * in the environment takes them out, as the harness did before the fix.
 */
#include "fuzz_common.h"
#include "../../src/bounce.c"

#include "mime.h"

#include <fcntl.h>

static bool raw_fields;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	raw_fields = getenv("FUZZ_BOUNCE_CLEAN") == NULL;
	return 0;
}

static char *field(const char **p, const char *end)
{
	const char *z = memchr(*p, 0, (size_t)(end - *p));
	size_t n = z ? (size_t)(z - *p) : (size_t)(end - *p);
	char *s = xstrndup(*p, n);
	*p += n + (z ? 1 : 0);
	if (!raw_fields)
		for (char *c = s; *c; c++)
			if (*c == '\r' || *c == '\n')
				*c = ' ';
	return s;
}

static const char *const report_fields[] = {
	"Received", "From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted",
	"MIME-Version", "Content-Type",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	if (!size)
		return 0;
	char *sender = field(&p, end);
	struct qmsg *m = qmsg_new("0000000000ABCDEF0000", sender, 1700000000);
	free(sender);
	const char *msg = "";
	size_t msg_len = 0;
	while (p < end && m->ndests < 16) {
		char *addr = field(&p, end);
		if (!*addr) {
			free(addr);
			msg = p;
			msg_len = (size_t)(end - p);
			break;
		}
		char *why = p < end ? field(&p, end) : xstrdup("");
		/* bypass qmsg_add_dest: the router decides what an address is */
		m->dests = xrealloc(m->dests, (size_t)(m->ndests + 1) * sizeof *m->dests);
		m->dests[m->ndests++] = (struct qdest){
			.transport = xstrdup("maildir"), .address = addr, .orig = xstrdup(addr),
			.local = xstrdup(""), .domain = xstrdup(""), .status = Q_BOUNCED,
			.last_error = why, .expired = m->ndests & 1,
		};
	}

	/* the queue file: an envelope, then the message */
	struct buf file = {0};
	spool_envelope(&file, m);
	buf_add(&file, msg, msg_len);
	m->end = file.len;
	int fd = fuzz_memfd(file.data, file.len);
	struct buf headers = {0};
	bounce_capture_headers(fd, m, &headers);
	close(fd);
	buf_free(&file);

	/* what the header section is, computed here on the bytes */
	size_t want = msg_len < HEADERS_MAX ? msg_len : HEADERS_MAX;
	if (msg_len >= 2 && msg[0] == '\r' && msg[1] == '\n')
		want = 0;                    /* the empty line first: no header fields */
	else for (size_t i = 0; i + 4 <= msg_len; i++)
		if (!memcmp(msg + i, "\r\n\r\n", 4)) {
			if (i + 2 <= HEADERS_MAX)
				want = i + 2;
			break;
		}
	if (headers.len > msg_len || (headers.len && memcmp(headers.data, msg, headers.len)))
		fuzz_fail("bounce_capture_headers: not a prefix of the message");
	/* a NUL in the header section does not hide its end (bounce_header_end
	 * uses lengths; seed tests/fuzz/corpus/bounce/nul-hides-end-of-headers) */
	if (headers.len != want)
		fuzz_fail("bounce_capture_headers: %zu bytes captured, the header section is %zu",
		          headers.len, want);

	struct config cfg = { .hostname = "mx.example.org" };
	struct server srv = { .cfg = &cfg };
	struct buf report = {0};
	compose(&srv, m, "0000000000ABCDEF0001", &headers, false, false, &report);   /* a failure report, headers only */

	struct mime_message mm;
	mime_parse(report.data, report.len, &mm);
	if (mm.nparts != 4 || strcmp(mm.parts[0].content_type, "multipart/report") ||
	    strcmp(mm.parts[1].content_type, "text/plain") ||
	    strcmp(mm.parts[2].content_type, "message/delivery-status") ||
	    strcmp(mm.parts[3].content_type, "text/rfc822-headers") ||
	    (mm.flags & MIME_BAD_BOUNDARY) ||
	    ((mm.parts[0].flags | mm.parts[1].flags | mm.parts[2].flags) & MIME_BAD_HEADER))
		fuzz_fail("the report's MIME structure is broken: %d parts, flags %#x", mm.nparts,
		          mm.flags);
	struct mime_hdr_iter it;
	mime_hdr_begin(&it, mm.parts[0].head, mm.parts[0].head_len);
	int nfields = 0;
	while (mime_hdr_next(&it)) {
		bool known = false;
		for (size_t k = 0; k < sizeof report_fields / sizeof report_fields[0]; k++)
			known |= !strcasecmp(it.name.data, report_fields[k]);
		if (!known)
			fuzz_fail("the report has a header field it does not write: '%s'", it.name.data);
		nfields++;
	}
	mime_hdr_end(&it);
	if (nfields != (int)(sizeof report_fields / sizeof report_fields[0]))
		fuzz_fail("the report has %d header fields", nfields);
	mime_message_free(&mm);
	buf_free(&report);
	buf_free(&headers);
	qmsg_free(&m);
	return 0;
}
