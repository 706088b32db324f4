/*
 * test-spool-envelope.c - the queue file format, its seal, and recovery.
 *
 * Writes envelopes with spool_envelope(), seals them, reads them back with
 * spool_read_envelope(), flips status bytes in place at the recorded
 * offsets, damages files byte by byte, commits through the real group
 * commit, and runs spool_recover() over a spool holding every kind of
 * leftover a crash can leave: a slot caught half written, a sealed
 * pending message, a finished one, a free slot, damaged and truncated
 * files, and a file an operator released from hold.
 */
#include "crc32c.h"
#include "event.h"
#include "log.h"
#include "spool.h"
#include "tap.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static const char *MSG = "Subject: hi\r\n\r\nbody\r\n";
static char dir[] = "/tmp/petrel-test-spool-XXXXXX";

/* A whole queue file in memory: seal line, envelope, message. */
static void make_file(struct buf *b, struct qmsg *m, const char *status, char state)
{
	spool_envelope(b, m);
	buf_adds(b, MSG);
	if (state != 'W')
		spool_seal_buf(b->data, b->len, state);
	if (status)
		for (int i = 0; i < m->ndests; i++)
			b->data[m->dests[i].status_off] = status[i];
}

static void put(const char *name, const char *data, size_t len)
{
	char *p = xasprintf("%s/queue/%s", dir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
	free(p);
}

static void put_msg(const char *name, struct qmsg *m, const char *status, char state)
{
	struct buf b = {0};
	make_file(&b, m, status, state);
	put(name, b.data, b.len);
	buf_free(&b);
}

static int count_dir(const char *sub)
{
	char *p = xasprintf("%s/%s", dir, sub);
	DIR *d = opendir(p);
	int n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)))
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	free(p);
	return n;
}

static off_t file_size(const char *name)
{
	char *p = xasprintf("%s/queue/%s", dir, name);
	struct stat st;
	off_t r = stat(p, &st) == 0 ? st.st_size : -1;
	free(p);
	return r;
}

static int open_q(const char *name)
{
	char *p = xasprintf("%s/queue/%s", dir, name);
	int fd = open(p, O_RDWR);
	free(p);
	return fd;
}

static void test_crc(void)
{
	tap_ok(crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c check value");
	tap_ok(crc32c(crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u, "crc32c in pieces");
	tap_ok(crc32c(0, "", 0) == 0, "crc32c of nothing");
	/* status bytes count as P: flipping one keeps the checksum */
	const char *a = "Q X\nT 1\nS \nDP\tm\ta@b\ta@b\nE\nDB body\r\n";
	const char *b = "Q X\nT 1\nS \nDD\tm\ta@b\ta@b\nE\nDB body\r\n";
	const char *c = "Q X\nT 1\nS \nDP\tm\ta@b\ta@b\nE\nDP body\r\n";
	struct spool_crc ca = {0}, cb = {0}, cc = {0}, cs = {0};
	spool_crc_feed(&ca, a, strlen(a));
	spool_crc_feed(&cb, b, strlen(b));
	spool_crc_feed(&cc, c, strlen(c));
	for (size_t i = 0; i < strlen(a); i++)
		spool_crc_feed(&cs, a + i, 1);
	tap_ok(ca.crc == cb.crc, "a destination's status byte is not in the checksum");
	tap_ok(ca.crc != cc.crc, "a 'D' line in the message body is");
	tap_ok(ca.crc == cs.crc, "feeding byte by byte gives the same checksum");
}

static struct qmsg *sample(const char *qid)
{
	struct qmsg *m = qmsg_new(qid, "sender@example.org", 1700000000);
	(void)qmsg_add_dest(m, "maildir", "alice@example.org", "alice@example.org");
	(void)qmsg_add_dest(m, "maildir", "\"john doe\"@Example.ORG", "team@example.org");
	return m;
}

static void test_round_trip(void)
{
	struct qmsg *m = sample("AAA1");
	tap_ok(m->ndests == 2, "two destinations added");
	tap_ok(qmsg_add_dest(m, "maildir", "not an address", "x") == NULL, "invalid address refused");
	tap_ok(!strcmp(m->dests[1].local, "john doe") && !strcmp(m->dests[1].domain, "example.org"),
	       "local part unquoted, domain lower-cased");
	put_msg("7", m, NULL, 'Q');
	int fd = open_q("7");
	const char *why = NULL;
	struct qmsg *r = spool_read_envelope(fd, NULL, &why);
	tap_ok(r != NULL, "a sealed file reads back");
	if (!r)
		tap_diag("why: %s", why);
	if (r) {
		TAP_STREQ(r->qid, "AAA1", "queue id from the file");
		TAP_STREQ(r->sender, "sender@example.org", "sender");
		tap_ok(r->arrival == 1700000000, "arrival time");
		tap_ok(r->ndests == 2, "two destinations");
		TAP_STREQ(r->dests[1].address, "\"john doe\"@Example.ORG", "address as given");
		TAP_STREQ(r->dests[1].orig, "team@example.org", "original recipient");
		tap_ok(r->dests[0].status == Q_PENDING, "status pending");
		tap_ok(r->msg_off == m->msg_off, "message offset");
		tap_ok(r->size == strlen(MSG) && r->end == (uint64_t)r->msg_off + strlen(MSG),
		       "message size and end");
		char got[64] = "";
		tap_ok(pread(fd, got, strlen(MSG), r->msg_off) == (ssize_t)strlen(MSG) &&
		       !memcmp(got, MSG, strlen(MSG)), "message bytes at offset");
		tap_ok(pwrite(fd, "D", 1, r->dests[0].status_off) == 1, "status rewritten in place");
		qmsg_free(&r);
		r = spool_read_envelope(fd, NULL, &why);
		tap_ok(r && r->dests[0].status == Q_DELIVERED && r->dests[1].status == Q_PENDING,
		       "status byte read back, seal still good");
		qmsg_free(&r);
	}
	r = spool_read_envelope(fd, "OTHER", &why);
	tap_ok(!r && strstr(why, "does not match"), "queue id must match a file named by id");
	/* old bytes past the sealed length do not matter */
	off_t len = file_size("7");
	tap_ok(pwrite(fd, "OLD GARBAGE FROM AN EARLIER MESSAGE", 35, len) == 35, "old bytes after the end");
	r = spool_read_envelope(fd, NULL, &why);
	tap_ok(r && r->end == (uint64_t)len && r->size == strlen(MSG), "still reads, bounded by its seal");
	qmsg_free(&r);
	close(fd);

	/* every single damaged byte after the seal line is caught */
	struct buf b = {0};
	make_file(&b, m, NULL, 'Q');
	int caught = 0, total = 0;
	for (size_t i = SPOOL_HDR_LEN; i < b.len; i++) {
		char save = b.data[i];
		b.data[i] ^= 0x20;
		put("8", b.data, b.len);
		fd = open_q("8");
		r = spool_read_envelope(fd, NULL, &why);
		/* a status byte flip is not damage (when it stays a status) */
		bool status = false;
		for (int k = 0; k < m->ndests; k++)
			status |= (off_t)i == m->dests[k].status_off;
		if (!status) {
			total++;
			caught += r == NULL;
		}
		qmsg_free(&r);
		close(fd);
		b.data[i] = save;
	}
	tap_ok(caught == total, "every damaged byte is caught (%d of %d)", caught, total);
	/* a file cut short */
	put("8", b.data, b.len - 3);
	fd = open_q("8");
	r = spool_read_envelope(fd, NULL, &why);
	tap_ok(!r && strstr(why, "shorter"), "a truncated file is refused: %s", why ? why : "");
	close(fd);
	/* an unsealed file is not read as mail */
	buf_free(&b);
	make_file(&b, m, NULL, 'W');
	put("8", b.data, b.len);
	fd = open_q("8");
	tap_ok(spool_read_state(fd) == 'W', "state W read");
	r = spool_read_envelope(fd, NULL, &why);
	tap_ok(!r, "an unsealed file is not mail");
	close(fd);
	put("8", "", 0);
	fd = open_q("8");
	tap_ok(spool_read_state(fd) == 0, "an empty file has no state");
	close(fd);
	buf_free(&b);
	qmsg_free(&m);
	char *p = xasprintf("%s/queue/7", dir);
	unlink(p);
	free(p);
	p = xasprintf("%s/queue/8", dir);
	unlink(p);
	free(p);
}

static void test_recover(struct spool *sp)
{
	struct buf errs = {0};
	struct qmsg *pend = sample("AAA1");
	put_msg("1", pend, "DP", 'Q');                 /* one destination left */
	struct qmsg *done = sample("BBB2");
	put_msg("2", done, "DD", 'Q');                 /* finished */
	struct qmsg *bounced = sample("LLL12");
	put_msg("9", bounced, "DB", 'Q');              /* finished, its bounce maybe not queued */
	struct qmsg *nullb = qmsg_new("MMM13", "", 1700000002);
	(void)qmsg_add_dest(nullb, "maildir", "x@example.org", "x@example.org");
	put_msg("10", nullb, "B", 'Q');                /* bounced, but from <>: nothing to report */
	struct qmsg *part = sample("CCC3");
	put_msg("3", part, NULL, 'W');                 /* caught half written */
	put("4", "garbage\n", 8);                      /* not a queue file */
	struct buf b = {0};
	struct qmsg *cut = sample("EEE5");
	make_file(&b, cut, NULL, 'Q');
	put("5", b.data, b.len - 5);                   /* sealed, then cut short */
	buf_free(&b);
	struct qmsg *freed = sample("FFF6");
	put_msg("6", freed, NULL, 'F');                /* free slot */
	struct qmsg *rel = sample("GGG7");
	put_msg("GGG7", rel, NULL, 'Q');               /* released from hold */
	put("not-a-slot", "x", 1);

	struct qmsg **out;
	int n, fd;
	tap_ok(spool_recover(sp, &out, &n, &errs) == 0, "recover runs");
	tap_ok(n == 3, "three messages come back (%d)", n);
	struct qmsg *a = NULL, *g = NULL, *l = NULL;
	for (int i = 0; i < n; i++) {
		if (!strcmp(out[i]->qid, "AAA1"))
			a = out[i];
		else if (!strcmp(out[i]->qid, "GGG7"))
			g = out[i];
		else if (!strcmp(out[i]->qid, "LLL12"))
			l = out[i];
	}
	tap_ok(a && a->slot == 1, "the pending slot, with its slot number");
	tap_ok(a && a->dests[0].status == Q_DELIVERED && a->dests[1].status == Q_PENDING,
	       "and its delivered destination marked");
	tap_ok(g && g->slot == -1, "the released file, named by its queue id");
	tap_ok(l && l->slot == 9 && l->dests[1].status == Q_BOUNCED,
	       "a finished message with a bounce to report stays for the queue");
	fd = open_q("10");
	tap_ok(fd >= 0 && spool_read_state(fd) == 'F', "a bounce from <> has nothing to report: freed");
	close(fd);
	for (int i = 0; i < n; i++)
		qmsg_free(&out[i]);
	free(out);
	tap_ok(file_size("3") == 0, "the half-written slot is emptied");
	fd = open_q("2");
	tap_ok(fd >= 0 && spool_read_state(fd) == 'F', "the finished slot is marked free");
	close(fd);
	tap_ok(file_size("4") < 0 && file_size("5") < 0 && file_size("not-a-slot") < 0,
	       "damaged, cut and unknown files left queue/");
	tap_ok(count_dir("corrupt") == 3, "and are kept in corrupt/ (%d)", count_dir("corrupt"));
	tap_ok(count_dir("queue") == 7, "queue/ holds slots 1 2 3 6 9 10 and GGG7 (%d)", count_dir("queue"));

	/* slots are reused: the free ones (2, 3, 6, 10) first, then new ones */
	int seen[4] = {0}, fds[5];
	const char *err = NULL;
	bool reused = true;
	for (int i = 0; i < 4; i++) {
		struct qmsg *m = qmsg_new("HHH8", "", 0);
		fds[i] = spool_create(sp, m, &err);
		reused &= fds[i] >= 0 &&
		          (m->slot == 2 || m->slot == 3 || m->slot == 6 || m->slot == 10) &&
		          lseek(fds[i], 0, SEEK_CUR) == 0;
		for (int k = 0; k < i; k++)
			reused &= seen[k] != m->slot;
		seen[i] = m->slot;
		qmsg_free(&m);
	}
	tap_ok(reused, "the free slots are taken, each once, at offset 0");
	struct qmsg *m = qmsg_new("III9", "", 0);
	fds[4] = spool_create(sp, m, &err);
	tap_ok(fds[4] >= 0 && m->slot == 11, "then a new slot above the highest seen (%d)", m->slot);
	char big[4096];
	memset(big, 'x', sizeof big);
	tap_ok(write(fds[0], big, sizeof big) == (ssize_t)sizeof big, "write into a slot");
	spool_abort(sp, seen[0], fds[0]);
	char name[16];
	snprintf(name, sizeof name, "%d", seen[0]);
	tap_ok(file_size(name) == 0, "an aborted message leaves nothing behind");
	for (int i = 1; i < 4; i++)
		spool_abort(sp, seen[i], fds[i]);
	spool_abort(sp, m->slot, fds[4]);
	qmsg_free(&m);
	qmsg_free(&pend);
	qmsg_free(&done);
	qmsg_free(&bounced);
	qmsg_free(&nullb);
	qmsg_free(&part);
	qmsg_free(&cut);
	qmsg_free(&freed);
	qmsg_free(&rel);
	buf_free(&errs);
}

struct result {
	struct ev_loop *loop;
	int ok, calls;
};

static void committed(void *arg, int ok, int errnum, const char *err)
{
	struct result *r = arg;
	(void)errnum;
	r->ok = ok;
	r->calls++;
	if (!ok)
		tap_diag("commit failed: %s", err);
	ev_stop(r->loop);
}

static void test_commit(struct spool *sp, struct ev_loop *loop)
{
	/* a message written the way a session writes it, over a slot that
	 * held a longer message before */
	struct qmsg *m = sample("JJJ10");
	const char *err = NULL;
	int fd = spool_create(sp, m, &err);
	char big[8192];
	memset(big, 'o', sizeof big);
	tap_ok(fd >= 0 && write(fd, big, sizeof big) == (ssize_t)sizeof big, "old bytes in a slot");
	int slot = m->slot;
	tap_ok(lseek(fd, 0, SEEK_SET) == 0, "rewind");
	struct buf b = {0};
	spool_envelope(&b, m);
	buf_adds(&b, MSG);
	tap_ok(write(fd, b.data, b.len) == (ssize_t)b.len, "message written");
	struct result r = { .loop = loop };
	spool_commit(sp, m, fd, false, committed, &r);
	ev_run(loop);
	tap_ok(r.calls == 1 && r.ok, "commit calls back with success");
	tap_ok(m->end == b.len, "the message ends where it was written");
	char name[16];
	snprintf(name, sizeof name, "%d", slot);
	fd = open_q(name);
	struct qmsg *back = spool_read_envelope(fd, NULL, &err);
	tap_ok(back && !strcmp(back->qid, "JJJ10") && back->end == b.len, "sealed on disk, old bytes past it");
	tap_ok(file_size(name) == (off_t)sizeof big, "the slot kept its size");
	if (back)
		back->slot = slot;
	tap_ok(back && spool_retire(sp, back, fd) == 0 && spool_read_state(fd) == 'F',
	       "retire marks it free");
	qmsg_free(&back);
	close(fd);

	/* held: the file leaves the slots for hold/QID */
	struct qmsg *h = sample("KKK11");
	fd = spool_create(sp, h, &err);
	buf_free(&b);
	spool_envelope(&b, h);
	buf_adds(&b, MSG);
	tap_ok(fd >= 0 && write(fd, b.data, b.len) == (ssize_t)b.len, "held message written");
	snprintf(name, sizeof name, "%d", h->slot);
	r.calls = 0;
	spool_commit(sp, h, fd, true, committed, &r);
	ev_run(loop);
	char *hp = xasprintf("%s/hold/KKK11", dir);
	fd = open(hp, O_RDONLY);
	struct qmsg *hb = fd >= 0 ? spool_read_envelope(fd, "KKK11", &err) : NULL;
	tap_ok(r.calls == 1 && r.ok && hb, "held message sealed in hold/");
	tap_ok(file_size(name) < 0, "and its slot is gone from queue/");
	qmsg_free(&hb);
	if (fd >= 0)
		close(fd);
	free(hp);
	buf_free(&b);
	qmsg_free(&m);
	qmsg_free(&h);
}

/* Fields with the bytes that separate fields and records (found by
 * tests/fuzz/fuzz_spool_envelope.c: a sender "\n" made the file unreadable,
 * a TAB in a transport name shifted the address). */
static void test_escaped_fields(void)
{
	static const char *const senders[] = {
		"a\nE\nb@x", "tab\there@x", "cr\r@x", "back\\slash@x", "\\x41@x",
		"bad\xff\xc3(utf8@x", "\nDP\tm\ta@b\ta@b", "\x01\x1f\x7f", "\\",
	};
	int good = 0, n = (int)(sizeof senders / sizeof senders[0]);
	for (int i = 0; i < n; i++) {
		struct qmsg *m = qmsg_new("AAA9", senders[i], 1);
		(void)qmsg_add_dest(m, senders[i], "alice@example.org", senders[i]);
		put_msg("9", m, NULL, 'Q');
		int fd = open_q("9");
		const char *why = NULL;
		struct qmsg *r = spool_read_envelope(fd, NULL, &why);
		bool ok = r && !strcmp(r->sender, senders[i]) && r->ndests == 1 &&
		          !strcmp(r->dests[0].transport, senders[i]) &&
		          !strcmp(r->dests[0].orig, senders[i]) && r->msg_off == m->msg_off;
		if (!ok)
			tap_diag("case %d: %s", i, r ? "fields differ" : why);
		good += ok;
		qmsg_free(&r);
		qmsg_free(&m);
		close(fd);
	}
	tap_ok(good == n, "CR, LF, TAB, backslash, control bytes, invalid UTF-8 in fields read back (%d of %d)",
	       good, n);
	/* version 2 files (fields as they were) are still read, as they are */
	const char *v2 = "Q AAA8\nT 5\nS a\\b@x\nDP\tmaildir\t\"a\\\\b\"@x\to\\x41@x\nE\nbody\r\n";
	struct buf b = {0};
	char seal[SPOOL_HDR_LEN];
	memset(seal, ' ', sizeof seal);
	buf_add(&b, seal, sizeof seal);
	buf_adds(&b, v2);
	spool_seal_buf(b.data, b.len, 'Q');
	b.data[13] = '2';
	put("9", b.data, b.len);
	int fd = open_q("9");
	tap_ok(spool_read_state(fd) == 'Q', "a version 2 file has a state");
	const char *why = NULL;
	struct qmsg *r = spool_read_envelope(fd, NULL, &why);
	tap_ok(r && !strcmp(r->sender, "a\\b@x") && r->ndests == 1 &&
	       !strcmp(r->dests[0].address, "\"a\\\\b\"@x") && !strcmp(r->dests[0].orig, "o\\x41@x"),
	       "a version 2 file reads back without unescaping");
	if (!r)
		tap_diag("why: %s", why);
	qmsg_free(&r);
	close(fd);
	/* a bad escape in a version 3 file is damage */
	b.data[13] = '3';
	spool_seal_buf(b.data, b.len, 'Q');
	put("9", b.data, b.len);
	fd = open_q("9");
	r = spool_read_envelope(fd, NULL, &why);
	tap_ok(!r && why && strstr(why, "escape"), "a bad escape in version 3 is refused: %s",
	       r ? "read" : why);
	qmsg_free(&r);
	close(fd);
	buf_free(&b);
	char *p = xasprintf("%s/queue/9", dir);
	unlink(p);
	free(p);
}

/* Notes past the valid bytes: hand-made text with its CRC line. */
static void notes_text(struct buf *b, const char *body)
{
	buf_adds(b, body);
	struct spool_crc c = {0};
	spool_crc_feed(&c, b->data, b->len);
	buf_addf(b, "END %08X\n", (unsigned)c.crc);
}

/* The file "N": message m, then 'tail' past its valid bytes; read back,
 * the last errors found (NULL where none), as a joined string. */
static char *read_notes_of(struct qmsg *m, const char *tail, size_t tail_len)
{
	struct buf b = {0};
	make_file(&b, m, NULL, 'Q');
	buf_add(&b, tail, tail_len);
	put("N", b.data, b.len);
	buf_free(&b);
	int fd = open_q("N");
	const char *why = NULL;
	struct qmsg *r = spool_read_envelope(fd, NULL, &why);
	close(fd);
	struct buf o = {0};
	for (int i = 0; r && i < r->ndests; i++)
		buf_addf(&o, "%s%s", i ? "|" : "", r->dests[i].last_error ? r->dests[i].last_error : "-");
	if (!r)
		buf_addf(&o, "unreadable: %s", why);
	qmsg_free(&r);
	char *out = xstrdup(o.data ? o.data : "");
	buf_free(&o);
	return out;
}

static void test_notes(void)
{
	struct qmsg *m = sample("AAN1");
	(void)qmsg_add_dest(m, "maildir", "carol@example.org", "carol@example.org");
	struct buf f = {0};
	make_file(&f, m, NULL, 'Q');
	m->end = f.len;
	buf_free(&f);
	m->dests[0].last_error = xstrdup("451 4.3.0 odd\r\nbytes\t\\x41 here");
	m->dests[1].last_error = xstrdup("250 delivered");
	m->dests[1].status = Q_DELIVERED;       /* not pending: no note */
	char long_err[1000];
	memset(long_err, 'y', sizeof long_err - 1);
	long_err[sizeof long_err - 1] = 0;
	m->dests[2].last_error = xstrdup(long_err);
	/* what spool_write_notes writes, taken from a file */
	put_msg("N", m, NULL, 'Q');
	char *p = xasprintf("%s/queue/N", dir);
	int fd = open(p, O_RDWR);
	tap_ok(fd >= 0 && spool_write_notes(fd, m) == 0, "notes written past the valid bytes");
	struct stat st;
	size_t nlen = fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size > m->end
	                  ? (size_t)st.st_size - (size_t)m->end : 0;
	char *notes = xmalloc(nlen + 1);
	tap_ok(fd >= 0 && pread(fd, notes, nlen, (off_t)m->end) == (ssize_t)nlen, "and read as bytes");
	notes[nlen] = 0;
	if (fd >= 0)
		close(fd);
	/* never onto a file cut short: the hole would read as zeros */
	int tfd = open(p, O_RDWR);
	tap_ok(tfd >= 0 && ftruncate(tfd, (off_t)m->end - 10) == 0 && spool_write_notes(tfd, m) < 0 &&
	       fstat(tfd, &st) == 0 && (uint64_t)st.st_size == m->end - 10,
	       "no notes onto a file shorter than its message");
	if (tfd >= 0)
		close(tfd);
	free(p);
	char want_long[SPOOL_NOTE_MAX + 1];
	memcpy(want_long, long_err, SPOOL_NOTE_MAX);
	want_long[SPOOL_NOTE_MAX] = 0;
	char *want = xasprintf("451 4.3.0 odd\r\nbytes\t\\x41 here|-|%s", want_long);

	struct buf crafted = {0}, wrong_idx = {0}, no_tab = {0}, bad_esc = {0};
	notes_text(&crafted, "PETREL-NOTES AAN1\n0\tfirst\n2\tthird\n");
	notes_text(&wrong_idx, "PETREL-NOTES AAN1\n9\tnine\n1\tsecond\n0\tfirst\n");
	notes_text(&no_tab, "PETREL-NOTES AAN1\n0 first\nzz\tx\n2\tthird\n");
	notes_text(&bad_esc, "PETREL-NOTES AAN1\n0\tbad \\q escape\n2\tthird\n");
	struct buf other = {0}, garbage = {0};
	notes_text(&other, "PETREL-NOTES AAN2\n0\tanother message's\n");
	buf_add(&garbage, notes, nlen);
	buf_adds(&garbage, "PETREL-NOTES AAN1\n0\tolder, longer tail\n");
	char *flipped = xstrdup(notes);
	flipped[strlen("PETREL-NOTES AAN1\n0\t") + 2] ^= 0x20;
	const struct {
		const char *label, *tail;
		size_t len;
		const char *want;
	} cases[] = {
		{ "what spool_write_notes wrote reads back (escapes, a cut error)", notes, nlen, want },
		{ "none: nothing past the message", "", 0, "-|-|-" },
		{ "hand-made notes", crafted.data, crafted.len, "first|-|third" },
		{ "an index past the destinations and a delivered one are ignored", wrong_idx.data,
		  wrong_idx.len, "first|-|-" },
		{ "a line without a tab or with a bad index is skipped", no_tab.data, no_tab.len, "-|-|third" },
		{ "a bad escape drops its line", bad_esc.data, bad_esc.len, "-|-|third" },
		{ "another message's notes (a reused slot) are not taken", other.data, other.len, "-|-|-" },
		{ "bytes past END (an older tail) do not matter", garbage.data, garbage.len, want },
		{ "one changed byte fails the CRC", flipped, nlen, "-|-|-" },
		{ "no END line", notes, nlen - 14, "-|-|-" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = read_notes_of(m, cases[i].tail, cases[i].len);
		tap_ok(!strcmp(got, cases[i].want), "notes: %s", cases[i].label);
		if (strcmp(got, cases[i].want))
			tap_diag("got '%s', want '%s'", got, cases[i].want);
		free(got);
	}
	/* a write torn anywhere reads as no notes, never as other text */
	int torn_ok = 0;
	for (size_t cut = 0; cut < nlen; cut++) {
		char *got = read_notes_of(m, notes, cut);
		torn_ok += !strcmp(got, "-|-|-");
		free(got);
	}
	tap_ok(torn_ok == (int)nlen, "notes cut at each of %zu bytes read as none (%d)", nlen, torn_ok);
	buf_free(&crafted);
	buf_free(&wrong_idx);
	buf_free(&no_tab);
	buf_free(&bad_esc);
	buf_free(&other);
	buf_free(&garbage);
	free(flipped);
	free(notes);
	free(want);
	qmsg_free(&m);
	p = xasprintf("%s/queue/N", dir);
	unlink(p);
	free(p);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	log_open("test", 1);
	struct ev_loop *loop = ev_loop_new();
	struct buf errs = {0};
	struct spool *sp = spool_open(dir, loop, &errs);
	tap_ok(sp != NULL, "spool opens and creates its directories");
	if (!sp)
		return tap_done();

	/* queue ids: unique and increasing, even in a burst */
	char prev[QID_MAX] = "", qid[QID_MAX];
	int unique = 1;
	for (int i = 0; i < 100000; i++) {
		spool_new_qid(sp, qid);
		if (strcmp(qid, prev) <= 0)
			unique = 0;
		memcpy(prev, qid, sizeof qid);
	}
	tap_ok(unique, "100000 queue ids are unique and increasing");
	test_escaped_fields();
	int slot;
	tap_ok(spool_slot_name("0", &slot) && slot == 0 && spool_slot_name("123", &slot) && slot == 123,
	       "slot names");
	tap_ok(!spool_slot_name("0123", &slot) && !spool_slot_name("69F2A1B2C0001200", &slot) &&
	       !spool_slot_name("99999999999999999999", &slot) && !spool_slot_name("", &slot),
	       "queue ids and odd names are not slots");

	test_crc();
	test_round_trip();
	test_notes();
	test_recover(sp);
	test_commit(sp, loop);

	spool_close(&sp);
	ev_loop_free(&loop);
	buf_free(&errs);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		tap_diag("cleanup failed");
	free(cmd);
	return tap_done();
}
