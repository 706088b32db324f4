/*
 * test-spool-envelope.c - the queue file format and recovery.
 *
 * Writes envelopes with spool_envelope(), reads them back with
 * spool_read_envelope(), flips status bytes in place at the recorded
 * offsets, and runs spool_recover() over a spool holding every kind of
 * leftover a crash can leave: an incomplete incoming file, a pending
 * message, a fully delivered one, and a corrupt one.
 */
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

static void write_queue_file(const char *dir, struct qmsg *m, const char *extra_status)
{
	struct buf b = {0};
	spool_envelope(&b, m);
	buf_adds(&b, MSG);
	if (extra_status)
		for (int i = 0; i < m->ndests; i++)
			b.data[m->dests[i].status_off] = extra_status[i];
	char *p = xasprintf("%s/queue/%s", dir, m->qid);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, b.data, b.len) != (ssize_t)b.len)
		abort();
	close(fd);
	free(p);
	buf_free(&b);
}

static int count_dir(const char *dir, const char *sub)
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

int main(void)
{
	char dir[] = "/tmp/petrel-test-spool-XXXXXX";
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

	/* envelope round trip */
	struct qmsg *m = qmsg_new("AAA1", "sender@example.org", 1700000000);
	tap_ok(qmsg_add_dest(m, "maildir", "alice@example.org", "alice@example.org") != NULL, "add dest");
	tap_ok(qmsg_add_dest(m, "maildir", "\"john doe\"@Example.ORG", "team@example.org") != NULL,
	       "add dest with quoted local part");
	tap_ok(qmsg_add_dest(m, "maildir", "not an address", "x") == NULL, "invalid address refused");
	tap_ok(!strcmp(m->dests[1].local, "john doe") && !strcmp(m->dests[1].domain, "example.org"),
	       "local part unquoted, domain lower-cased");
	write_queue_file(dir, m, NULL);
	char *p = xasprintf("%s/queue/AAA1", dir);
	int fd = open(p, O_RDWR);
	const char *why = NULL;
	struct qmsg *r = spool_read_envelope(fd, "AAA1", &why);
	tap_ok(r != NULL, "envelope reads back");
	if (r) {
		TAP_STREQ(r->sender, "sender@example.org", "sender");
		tap_ok(r->arrival == 1700000000, "arrival time");
		tap_ok(r->ndests == 2, "two destinations");
		TAP_STREQ(r->dests[1].address, "\"john doe\"@Example.ORG", "address as given");
		TAP_STREQ(r->dests[1].orig, "team@example.org", "original recipient");
		tap_ok(r->dests[0].status == Q_PENDING, "status pending");
		tap_ok(r->msg_off == m->msg_off, "message offset");
		tap_ok(r->size == strlen(MSG), "message size");
		char got[64] = "";
		tap_ok(pread(fd, got, strlen(MSG), r->msg_off) == (ssize_t)strlen(MSG) &&
		       !memcmp(got, MSG, strlen(MSG)), "message bytes at offset");
		tap_ok(pwrite(fd, "D", 1, r->dests[0].status_off) == 1, "status rewritten in place");
		qmsg_free(&r);
		r = spool_read_envelope(fd, "AAA1", &why);
		tap_ok(r && r->dests[0].status == Q_DELIVERED && r->dests[1].status == Q_PENDING,
		       "status byte read back");
		qmsg_free(&r);
	}
	r = spool_read_envelope(fd, "OTHER", &why);
	tap_ok(!r && strstr(why, "does not match"), "queue id must match the file name");
	close(fd);
	free(p);

	/* recovery */
	struct qmsg *done = qmsg_new("BBB2", "", 1700000001);
	(void)qmsg_add_dest(done, "maildir", "bob@example.org", "bob@example.org");
	write_queue_file(dir, done, "D");
	char *inc = xasprintf("%s/incoming/CCC3", dir);
	fd = open(inc, O_WRONLY | O_CREAT, 0600);
	tap_ok(fd >= 0 && write(fd, "PETREL-QUEUE 1\nQ CCC3\n", 22) == 22, "incomplete incoming file");
	close(fd);
	char *bad = xasprintf("%s/queue/DDD4", dir);
	fd = open(bad, O_WRONLY | O_CREAT, 0600);
	tap_ok(fd >= 0 && write(fd, "garbage\n", 8) == 8, "corrupt queue file");
	close(fd);
	char *trunc = xasprintf("%s/queue/EEE5", dir);
	fd = open(trunc, O_WRONLY | O_CREAT, 0600);
	tap_ok(fd >= 0 && write(fd, "PETREL-QUEUE 1\nQ EEE5\nT 1\nS a@b\nDP\tmaildir\ta@b", 45) == 45,
	       "truncated envelope");
	close(fd);

	struct qmsg **out;
	int n;
	tap_ok(spool_recover(sp, &out, &n, &errs) == 0, "recover runs");
	tap_ok(n == 1 && !strcmp(out[0]->qid, "AAA1"), "only the pending message comes back");
	tap_ok(n == 1 && out[0]->dests[0].status == Q_DELIVERED && out[0]->dests[1].status == Q_PENDING,
	       "with its delivered destination marked");
	tap_ok(count_dir(dir, "incoming") == 0, "incoming/ emptied");
	tap_ok(access(inc, F_OK) != 0, "incomplete message removed");
	tap_ok(count_dir(dir, "queue") == 1, "delivered message removed from queue/");
	tap_ok(count_dir(dir, "corrupt") == 2, "corrupt and truncated files moved to corrupt/");
	for (int i = 0; i < n; i++)
		qmsg_free(&out[i]);
	free(out);

	/* recycling: a finished queue file becomes the next incoming one */
	tap_ok(spool_retire(sp, "AAA1") == 0, "retire a finished message");
	tap_ok(count_dir(dir, "queue") == 0 && count_dir(dir, "free") == 1,
	       "its file moves from queue/ to free/");
	const char *cerr = NULL;
	fd = spool_create(sp, "FFF6", &cerr);
	struct stat st;
	tap_ok(fd >= 0 && fstat(fd, &st) == 0 && st.st_size == 0,
	       "create takes the free file over, truncated");
	tap_ok(count_dir(dir, "free") == 0 && count_dir(dir, "incoming") == 1,
	       "free/ is empty again, incoming/ holds the new message");
	if (fd >= 0)
		close(fd);
	fd = spool_create(sp, "GGG7", &cerr);
	tap_ok(fd >= 0 && count_dir(dir, "incoming") == 2, "with none free, a new file is made");
	if (fd >= 0)
		close(fd);
	tap_ok(spool_retire(sp, "NOPE") < 0, "retiring a missing file fails");
	/* a file left in free/ is never taken for mail */
	char *fp = xasprintf("%s/free/99", dir);
	fd = open(fp, O_WRONLY | O_CREAT, 0600);
	tap_ok(fd >= 0 && write(fd, "PETREL-QUEUE 1\nQ 99\nE\n", 22) == 22, "old data in free/");
	close(fd);
	free(fp);
	tap_ok(spool_recover(sp, &out, &n, &errs) == 0 && n == 0, "recovery ignores free/");
	free(out);
	free(inc);
	free(bad);
	free(trunc);
	qmsg_free(&m);
	qmsg_free(&done);
	spool_close(&sp);
	ev_loop_free(&loop);
	buf_free(&errs);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		tap_diag("cleanup failed");
	free(cmd);
	return tap_done();
}
