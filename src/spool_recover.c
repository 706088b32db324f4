/*
 * spool_recover.c - read queue files back: at start, after a crash.
 *
 * incoming/ holds only messages that never got "250": they are removed.
 * Every file in queue/ was acknowledged: its envelope is read, and it is
 * delivered to the destinations still pending.  A file whose envelope
 * cannot be read is moved to corrupt/ and logged, never deleted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spool.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct qmsg *spool_read_envelope(int fd, const char *qid, const char **why)
{
	/* dup() shares the offset: start from the top whatever came before */
	int dfd = lseek(fd, 0, SEEK_SET) == 0 ? dup(fd) : -1;
	FILE *f = dfd >= 0 ? fdopen(dfd, "r") : NULL;
	if (!f) {
		if (dfd >= 0)
			close(dfd);
		*why = "cannot read";
		return NULL;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	off_t off = 0;
	struct qmsg *m = NULL;
	int n = 0;
	*why = "truncated envelope";
	while ((len = getline(&line, &cap, f)) > 0) {
		off_t line_off = off;
		off += len;
		if (line[len - 1] != '\n') {
			*why = "truncated envelope";
			goto bad;
		}
		line[--len] = 0;
		n++;
		if (n == 1) {
			if (strcmp(line, "PETREL-QUEUE 1") != 0) {
				*why = "not a petrel queue file (or another version)";
				goto bad;
			}
			m = qmsg_new(qid, "", 0);
			continue;
		}
		switch (line[0]) {
		case 'Q':
			if (strcmp(line + 2, qid) != 0) {
				*why = "queue id does not match the file name";
				goto bad;
			}
			break;
		case 'T':
			m->arrival = (time_t)strtoll(line + 2, NULL, 10);
			break;
		case 'S':
			free(m->sender);
			m->sender = xstrdup(line + 2);
			break;
		case 'D': {
			char *st = line + 1, *tr, *addr, *orig;
			if (!*st || st[1] != '\t' || !(tr = st + 2) || !(addr = strchr(tr, '\t')) ||
			    !(orig = strchr(addr + 1, '\t'))) {
				*why = "bad destination line";
				goto bad;
			}
			*addr++ = 0;
			*orig++ = 0;
			struct qdest *d = qmsg_add_dest(m, tr, addr, orig);
			if (!d) {
				*why = "bad destination address";
				goto bad;
			}
			d->status = *st;
			d->status_off = line_off + 1;
			if (d->status != Q_PENDING && d->status != Q_DELIVERED && d->status != Q_BOUNCED) {
				*why = "bad destination status";
				goto bad;
			}
			break;
		}
		case 'E':
			m->msg_off = off;
			free(line);
			fclose(f);
			off_t end = lseek(fd, 0, SEEK_END);
			m->size = end > off ? (uint64_t)(end - off) : 0;
			return m;
		default:
			*why = "unknown envelope record";
			goto bad;
		}
	}
bad:
	free(line);
	fclose(f);
	if (m)
		qmsg_free(&m);
	return NULL;
}

static int cmp_arrival(const void *a, const void *b)
{
	const struct qmsg *x = *(struct qmsg *const *)a, *y = *(struct qmsg *const *)b;
	if (x->arrival != y->arrival)
		return x->arrival < y->arrival ? -1 : 1;
	return strcmp(x->qid, y->qid);
}

static bool valid_qid(const char *s)
{
	if (!*s || strlen(s) >= QID_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')))
			return false;
	return true;
}

int spool_recover(struct spool *sp, struct qmsg ***out, int *nout, struct buf *errs)
{
	char *inpath = xasprintf("%s/incoming", spool_dir(sp));
	char *qpath = xasprintf("%s/queue", spool_dir(sp));
	DIR *d = opendir(inpath);
	struct dirent *de;
	int removed = 0;
	*out = NULL;
	*nout = 0;
	if (d) {
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			if (unlinkat(dirfd(d), de->d_name, 0) == 0) {
				log_info("%s: removed incomplete message (never acknowledged)", de->d_name);
				removed++;
			}
		}
		closedir(d);
	}
	d = opendir(qpath);
	if (!d) {
		buf_addf(errs, "spool: cannot read %s: %s\n", qpath, strerror(errno));
		free(inpath);
		free(qpath);
		return -1;
	}
	int cap = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		const char *qid = de->d_name, *why = "not a queue id";
		int fd = valid_qid(qid) ? openat(dirfd(d), qid, O_RDONLY | O_CLOEXEC) : -1;
		struct qmsg *m = fd >= 0 ? spool_read_envelope(fd, qid, &why) : NULL;
		if (fd < 0 && valid_qid(qid))
			why = strerror(errno);
		if (fd >= 0)
			close(fd);
		if (!m) {
			char *dst = xasprintf("%s/corrupt/%s", spool_dir(sp), qid);
			char *src = xasprintf("%s/%s", qpath, qid);
			log_error("%s: unreadable queue file (%s): moved to %s", qid, why, dst);
			if (rename(src, dst) < 0)
				log_error("%s: cannot move to %s: %m", qid, dst);
			free(src);
			free(dst);
			continue;
		}
		int pending = 0;
		for (int i = 0; i < m->ndests; i++)
			pending += m->dests[i].status == Q_PENDING;
		if (!pending) {
			/* Delivered before the crash; only the clean-up was lost. */
			(void)unlinkat(dirfd(d), qid, 0);
			log_info("%s: removed", qid);
			qmsg_free(&m);
			continue;
		}
		if (*nout == cap) {
			cap = cap ? cap * 2 : 64;
			*out = xrealloc(*out, (size_t)cap * sizeof **out);
		}
		(*out)[(*nout)++] = m;
	}
	closedir(d);
	if (*nout)
		qsort(*out, (size_t)*nout, sizeof **out, cmp_arrival);
	if (removed || *nout)
		log_info("spool: recovered %d queued messages, removed %d incomplete", *nout, removed);
	free(inpath);
	free(qpath);
	return 0;
}
