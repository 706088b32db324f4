/*
 * test-msg-edit.c - table-driven tests of the header indexer and editor
 * (src/msg_edit.c) on a real spool in a temporary directory.
 *
 * Each case: a message, the header fields appended (none = an envelope-
 * only rewrite), and what must hold after msg_rewrite() and a reload: the
 * field count and the message bytes.  The cases come from fuzz findings
 * (seeds in tests/fuzz/corpus/msg-edit/): a continuation line before the
 * first field was dropped by a rewrite, and an appended field was absorbed
 * by a last field without a line end.
 */
#include "event.h"
#include "log.h"
#include "msg_edit.h"
#include "session.h"
#include "spool.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const struct {
	const char *name, *msg;
	size_t msg_len;         /* 0: strlen */
	const char *add;        /* a field name to append (value "v"), or NULL */
	int fields_before, fields_after;
	const char *want;       /* the message after the rewrite */
} cases[] = {
	{ .name = "leading continuation line is kept (envelope-only rewrite)",
	  .msg = "\t\n\n", .fields_before = 0, .fields_after = 0, .want = "\t\n\n" },
	{ .name = "leading continuation line starts the body",
	  .msg = " x\r\n\r\nbody\r\n", .fields_before = 0, .fields_after = 0,
	  .want = " x\r\n\r\nbody\r\n" },
	{ .name = "leading continuation line: an added field does not absorb it",
	  .msg = " x\r\n\r\nbody\r\n", .add = "X-Added", .fields_before = 0, .fields_after = 1,
	  .want = "X-Added: v\r\n\r\n x\r\n\r\nbody\r\n" },
	{ .name = "last field without a line end: the added field is its own",
	  .msg = "A: b", .add = "X-Added", .fields_before = 1, .fields_after = 2,
	  .want = "A: b\r\nX-Added: v\r\n" },
	{ .name = "ordinary message: field appended before the empty line",
	  .msg = "A: b\r\n\r\nbody\r\n", .add = "X-Added", .fields_before = 1, .fields_after = 2,
	  .want = "A: b\r\nX-Added: v\r\n\r\nbody\r\n" },
	{ .name = "folded field kept byte for byte",
	  .msg = "A: b\r\n c\r\n\r\nx", .add = "X-Added", .fields_before = 1, .fields_after = 2,
	  .want = "A: b\r\n c\r\nX-Added: v\r\n\r\nx" },
};

static int memfd_with(const char *p, size_t n)
{
	int fd = memfd_create("test-msg-edit", 0);
	if (fd < 0 || write(fd, p, n) != (ssize_t)n)
		abort();
	return fd;
}

int main(void)
{
	log_open("test-msg-edit", 1);
	char dir[] = "/tmp/petrel-test-msg-edit-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	struct ev_loop *loop = ev_loop_new();
	struct buf errs = {0};
	char *sdir = xasprintf("%s/spool", dir);
	struct spool *sp = spool_open(sdir, loop, &errs);
	if (!sp) {
		printf("Bail out! spool: %s\n", errs.data ? errs.data : "?");
		return 1;
	}
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t mlen = cases[i].msg_len ? cases[i].msg_len : strlen(cases[i].msg);
		struct qmsg *qm = qmsg_new("0000000000ABCDEF0000", "s@example.org", 1);
		(void)qmsg_add_dest(qm, "maildir", "r@example.org", "r@example.org");
		struct buf file = {0};
		spool_envelope(&file, qm);
		buf_add(&file, cases[i].msg, mlen);
		struct petrel_txn t = { .qm = qm, .fd = memfd_with(file.data, file.len),
		                        .env_dirty = !cases[i].add };
		buf_free(&file);
		const char *err = NULL;
		int ok = msg_load(&t, &err);
		tap_ok(ok == 0 && msg_header_count(&t) == cases[i].fields_before, "%s: %d fields",
		       cases[i].name, cases[i].fields_before);
		if (cases[i].add)
			tap_ok(msg_header_add(&t, cases[i].add, "v", 0) == 0, "%s: add", cases[i].name);
		ok = msg_rewrite(&t, sp, &err);
		tap_ok(ok == 0, "%s: rewrite", cases[i].name);
		t.env_dirty = false;
		ok = msg_load(&t, &err);
		int n = ok == 0 ? msg_header_count(&t) : -1;
		tap_ok(n == cases[i].fields_after, "%s: %d fields after", cases[i].name,
		       cases[i].fields_after);
		if (n != cases[i].fields_after)
			tap_diag("got %d", n);
		off_t end = lseek(t.fd, 0, SEEK_END);
		size_t len = (size_t)(end - (off_t)t.qm->msg_off);
		char *b = xmalloc(len + 1);
		if (pread(t.fd, b, len, (off_t)t.qm->msg_off) != (ssize_t)len)
			len = 0;
		b[len] = 0;
		TAP_STREQ(b, cases[i].want, cases[i].name);
		free(b);
		msg_free(&t);
		spool_abort(sp, qm->slot, t.fd);
		qmsg_free(&qm);
	}
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		tap_diag("could not remove %s", dir);
	free(cmd);
	free(sdir);
	return tap_done();
}
