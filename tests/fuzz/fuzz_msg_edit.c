/*
 * fuzz_msg_edit.c - libFuzzer harness for the header indexer and editor
 * (src/msg_edit.c), through the functions the host API uses: msg_load()
 * indexes the message of a transaction, the msg_header_* accessors read
 * it, msg_header_add/change/remove record edits, msg_rewrite() writes
 * the new queue slot (a real spool, in a temporary directory made once).
 *
 * Input: byte 0 = the number of edits (low 3 bits) and whether the
 * envelope is marked changed (bit 3); then the edits, 4 bytes each (op,
 * occurrence, name, value: name and value pick from the message's own
 * header names and a table of names and values, valid and not); the rest
 * is the message as the queue file holds it.
 *
 * Checked: the index (names and unfolded values) is the one a simple
 * line-by-line model of the header section gives (check_index: the
 * indexer itself is linear, one pass per field, and must not differ from
 * the obvious reading for any number of fields or continuation lines);
 * the accessors agree with the count; after msg_rewrite() the
 * new file loads again; with no header edit the rewritten message is the
 * message byte for byte (an envelope change must not touch it); with
 * only valid appended/prepended fields it has exactly that many more
 * fields.
 */
#include "fuzz_common.h"
#include "msg_edit.h"
#include "spool.h"
#include "log.h"

#include <fcntl.h>

static struct spool *sp;
static struct ev_loop *loop;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_open("fuzz-msg-edit", 1);
	loop = ev_loop_new();
	struct buf errs = {0};
	char *dir = xasprintf("%s/spool", fuzz_tmpdir());
	sp = spool_open(dir, loop, &errs);
	free(dir);
	if (!sp) {
		fprintf(stderr, "fuzz-msg-edit: spool: %s\n", errs.data ? errs.data : "?");
		exit(1);
	}
	return 0;
}

static const char *const names[] = { "Subject", "X-Added", "Received", "subject", "From",
                                     "Bad Name", "", "Content-Type" };
static const char *const values[] = { "hello", "", "a very long value with =?utf-8?q?w=C3=B6rds?=",
                                      "with\r\nCRLF", "x", "tab\there" };

static int load(struct petrel_txn *t)
{
	const char *err;
	if (msg_load(t, &err) < 0)
		fuzz_fail("msg_load: %s", err);
	int n = msg_header_count(t);
	for (int i = 0; i < n; i++)
		if (!msg_header_name(t, i) || !msg_header_value(t, i) || !msg_header_decoded(t, i))
			fuzz_fail("header %d of %d has no name, value or decoded value", i, n);
	if (msg_header_name(t, n) || msg_header_name(t, -1))
		fuzz_fail("a header past the count");
	for (int i = 0; i < msg_nparts(t); i++) {
		size_t len;
		(void)part_body(msg_part(t, i), &len);
	}
	return n;
}

/* The model: fields end where the next line does not start with SP or
 * HT; the section ends at an empty line (CR LF, LF, or a CR and at most
 * one octet more at the very end), a line
 * without ':', or a continuation line before any field.  A name is what
 * precedes the first ':' without trailing SP/HT; a value is every line of
 * the field from after the ':' without its trailing CRs and LFs, joined,
 * without surrounding SP/HT.  Names and values are C strings (a NUL ends
 * them). */
static void check_index(struct petrel_txn *t, const char *m, size_t len)
{
	int n = 0;
	size_t pos = 0;
	char *val = malloc(len + 1);
	while (pos < len) {
		size_t end = pos;
		while (end < len && m[end] != '\n')
			end++;
		end += end < len;
		size_t k = end - pos;
		if (m[pos] == '\n' || (m[pos] == '\r' && k <= 2))
			break;
		if (m[pos] == ' ' || m[pos] == '\t' || !memchr(m + pos, ':', k))
			break;
		size_t colon = (size_t)((const char *)memchr(m + pos, ':', k) - m);
		size_t nl = colon - pos;
		while (nl && (m[pos + nl - 1] == ' ' || m[pos + nl - 1] == '\t'))
			nl--;
		size_t vl = 0, from = colon + 1;
		for (;;) {           /* the field's lines */
			size_t e = end;
			while (e > from && (m[e - 1] == '\r' || m[e - 1] == '\n'))
				e--;
			memcpy(val + vl, m + from, e - from);
			vl += e - from;
			if (end >= len || (m[end] != ' ' && m[end] != '\t'))
				break;
			from = end;
			while (end < len && m[end] != '\n')
				end++;
			end += end < len;
		}
		size_t a = 0;
		while (a < vl && (val[a] == ' ' || val[a] == '\t'))
			a++;
		while (vl > a && (val[vl - 1] == ' ' || val[vl - 1] == '\t'))
			vl--;
		val[vl] = 0;
		const char *name = msg_header_name(t, n), *value = msg_header_value(t, n);
		if (!name || !value)
			fuzz_fail("field %d is not indexed (%d fields)", n, msg_header_count(t));
		if (strlen(name) != strnlen(m + pos, nl) || memcmp(name, m + pos, strlen(name)))
			fuzz_fail("field %d: name '%s', the model says '%.*s'", n, name, (int)nl, m + pos);
		if (strcmp(value, val + a))
			fuzz_fail("field %d (%s): value '%s', the model says '%s'", n, name, value, val + a);
		n++;
		pos = end;
	}
	free(val);
	if (n != msg_header_count(t))
		fuzz_fail("%d fields indexed, the model says %d", msg_header_count(t), n);
}

/* The message bytes of t's queue file. */
static char *read_msg(struct petrel_txn *t, size_t *len)
{
	off_t end = lseek(t->fd, 0, SEEK_CUR);
	size_t n = (size_t)(end - t->qm->msg_off);
	char *b = malloc(n + 1);
	if (pread(t->fd, b, n, t->qm->msg_off) != (ssize_t)n)
		fuzz_fail("cannot read the rewritten file");
	*len = n;
	return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int nedits = data[0] & 7;
	bool dirty = data[0] & 8;
	if (size < 1 + (size_t)nedits * 4)
		return 0;
	const uint8_t *ed = data + 1;
	const char *msg = (const char *)data + 1 + nedits * 4;
	size_t msg_len = size - 1 - (size_t)nedits * 4;

	struct qmsg *qm = qmsg_new("0000000000ABCDEF0000", "s@example.org", 1);
	(void)qmsg_add_dest(qm, "maildir", "r@example.org", "r@example.org");
	struct buf file = {0};
	spool_envelope(&file, qm);
	buf_add(&file, msg, msg_len);
	struct petrel_txn t = { .qm = qm, .fd = fuzz_memfd(file.data, file.len), .env_dirty = dirty };
	buf_free(&file);

	int n = load(&t);
	check_index(&t, msg, msg_len);
	bool header_edits = false, only_valid_adds = true;
	int adds = 0;
	for (int e = 0; e < nedits; e++) {
		const uint8_t *r = ed + e * 4;
		int op = r[0] & 3, occ = (int)(int8_t)r[1] % 4;
		const char *name = r[2] < n ? msg_header_name(&t, r[2])
		                            : names[r[2] % (sizeof names / sizeof names[0])];
		const char *value = values[r[3] % (sizeof values / sizeof values[0])];
		int ok;
		switch (op) {
		case 0: ok = msg_header_add(&t, name, value, 0); break;
		case 1: ok = msg_header_add(&t, name, value, 1); break;
		case 2: ok = msg_header_change(&t, name, occ, value); break;
		default: ok = msg_header_remove(&t, name, occ); break;
		}
		header_edits |= ok == 0;
		if (ok == 0 && op <= 1)
			adds++;
		if (ok == 0 && op > 1)
			only_valid_adds = false;
	}

	const char *err;
	if (msg_rewrite(&t, sp, &err) < 0)
		fuzz_fail("msg_rewrite: %s", err);
	if (msg_changed(&t) || dirty || header_edits) {
		/* a new slot: load it again */
		t.env_dirty = false;
		int n2 = load(&t);
		if (!header_edits) {
			size_t len;
			char *b = read_msg(&t, &len);
			/* a continuation line before the first field starts the body
			 * (seed tests/fuzz/corpus/msg-edit/leading-continuation-line-dropped) */
			if (len != msg_len || memcmp(b, msg, len))
				fuzz_fail("an envelope-only rewrite changed the message (%zu -> %zu bytes)",
				          msg_len, len);
			free(b);
		} else if (only_valid_adds && n2 != n + adds) {
			fuzz_fail("%d fields + %d added gave %d fields", n, adds, n2);
		}
	}
	msg_free(&t);
	spool_abort(sp, qm->slot, t.fd);
	qmsg_free(&qm);
	return 0;
}
