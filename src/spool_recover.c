/*
 * spool_recover.c - read queue files back: at start, after a crash.
 *
 * A slot whose seal says W (being written) never got "250": its bytes are
 * removed and the slot is free.  A sealed slot, or a file released from
 * hold, was acknowledged: its length and checksum are checked, its
 * envelope read, and it is delivered to the destinations still pending.
 * A file that fails a check is moved to corrupt/ and logged, never
 * deleted.  After a power failure a file can fail its check without any
 * mail at stake: a slot sealed but not yet synced when the power went
 * (never acknowledged) may hold part of its message, or pieces of it and
 * of a delivered one.  It goes to corrupt/ all the same: only a human
 * can tell.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spool.h"
#include "fileio.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int spool_read_state(int fd)
{
	char line[SPOOL_HDR_LEN];
	ssize_t n = pread_all(fd, line, sizeof line, 0);
	if (n == 0)
		return 0;
	if (n != (ssize_t)sizeof line || memcmp(line, "PETREL-QUEUE ", 13) != 0 ||
	    (line[13] != '2' && line[13] != '3') || line[14] != ' ' || line[SPOOL_HDR_LEN - 1] != '\n')
		return -1;
	char st = line[SPOOL_STATE_OFF];
	return st == 'W' || st == 'Q' || st == 'F' ? st : -1;
}

struct seal {
	uint64_t len;
	uint32_t crc;
	int version;
	char mark;              /* the delivery attempt mark (spool.h) */
	int crashes;
	int attempts;
	time_t next_try;
	bool warned;
};

/* True when p holds n hex digits. */
static bool all_hex(const char *p, int n)
{
	for (int i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'F')))
			return false;
	return true;
}

/* The seal line of a sealed file (version 2 or 3): its version, length,
 * CRC, the retry state when one was written, and the delivery attempt
 * mark and crash count in its padding (spool.h). */
static int read_seal(int fd, struct seal *sl, const char **why)
{
	char line[SPOOL_HDR_LEN + 1];
	if (pread_all(fd, line, SPOOL_HDR_LEN, 0) != SPOOL_HDR_LEN ||
	    memcmp(line, "PETREL-QUEUE ", 13) != 0 || (line[13] != '2' && line[13] != '3') ||
	    memcmp(line + 14, " Q ", 3) != 0) {
		*why = "not a sealed petrel queue file (or another version)";
		return -1;
	}
	sl->version = line[13] - '0';
	uint64_t *len = &sl->len;
	uint32_t *crc = &sl->crc;
	line[SPOOL_HDR_LEN] = 0;
	char *end;
	*len = strtoull(line + 17, &end, 16);
	if (end != line + 33 || *end != ' ') {
		*why = "bad length in the seal";
		return -1;
	}
	*crc = (uint32_t)strtoul(end + 1, &end, 16);
	if (end != line + 42) {
		*why = "bad checksum in the seal";
		return -1;
	}
	char a = line[SPOOL_ATTEMPT_OFF], c = line[SPOOL_CRASHES_OFF];
	sl->mark = a == SPOOL_ATTEMPT_SHARED || a == SPOOL_ATTEMPT_SOLO || a == SPOOL_ATTEMPT_SUSPECT
	               ? a : SPOOL_ATTEMPT_NONE;
	sl->crashes = c >= '1' && c <= '9' ? c - '0' : 0;
	/* <retry>: "AAAA NNNNNNNN W" exactly; padding in a version 2 file */
	const char *r = line + SPOOL_RETRY_OFF;
	sl->attempts = 0;
	sl->next_try = 0;
	sl->warned = false;
	if (all_hex(r, 4) && r[4] == ' ' && all_hex(r + 5, 8) && r[13] == ' ' &&
	    (r[14] == 'W' || r[14] == '-')) {
		sl->attempts = (int)strtoul(r, NULL, 16);
		sl->next_try = (time_t)strtoull(r + 5, NULL, 16);
		sl->warned = r[14] == 'W';
	}
	return 0;
}

/* The content must be all there and match its checksum. */
static int check_seal(int fd, uint64_t len, uint32_t want, const char **why)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || len < SPOOL_HDR_LEN || (uint64_t)st.st_size < len) {
		*why = "shorter than its seal says";
		return -1;
	}
	char chunk[65536];
	struct spool_crc c = {0};
	for (uint64_t off = SPOOL_HDR_LEN; off < len;) {
		size_t n = len - off < sizeof chunk ? (size_t)(len - off) : sizeof chunk;
		if (pread_all(fd, chunk, n, (off_t)off) != (ssize_t)n) {
			*why = "cannot read";
			return -1;
		}
		spool_crc_feed(&c, chunk, n);
		off += n;
	}
	if (c.crc != want) {
		*why = "checksum does not match the seal (damaged, or written but never synced)";
		return -1;
	}
	return 0;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
	     : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Undo spool.c's add_field() in place (version 3); -1 on a bad escape or
 * an escaped NUL. */
static int unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (*r != '\\') {
			*w++ = *r;
			continue;
		}
		if (r[1] == '\\') {
			*w++ = '\\';
			r++;
		} else if (r[1] == 'x' && hexval(r[2]) >= 0 && hexval(r[3]) >= 0 &&
		           (hexval(r[2]) | hexval(r[3]))) {
			*w++ = (char)(hexval(r[2]) * 16 + hexval(r[3]));
			r += 3;
		} else {
			return -1;
		}
	}
	*w = 0;
	return 0;
}

void spool_read_notes(int fd, struct qmsg *m)
{
	char head[16 + QID_MAX], got[sizeof head];
	snprintf(head, sizeof head, "PETREL-NOTES %s\n", m->qid);
	size_t hl = strlen(head);
	/* most files have none: their first bytes past the end say so */
	if (pread(fd, got, hl, (off_t)m->end) != (ssize_t)hl || memcmp(got, head, hl))
		return;
	/* at most every destination's line at its longest, escaped */
	size_t max = hl + (size_t)m->ndests * (12 + 4 * SPOOL_NOTE_MAX) + 16;
	char *p = xmalloc(max + 1);
	ssize_t n = pread(fd, p, max, (off_t)m->end);
	if (n <= 0) {
		free(p);
		return;
	}
	p[n] = 0;
	char *end = (size_t)n > hl && !memcmp(p, head, hl) ? memmem(p, (size_t)n, "\nEND ", 5) : NULL;
	if (!end || (size_t)(end + 1 - p) + 13 > (size_t)n || end[13] != '\n') {
		free(p);
		return;
	}
	end++;                          /* "END XXXXXXXX\n" */
	struct spool_crc c = {0};
	spool_crc_feed(&c, p, (size_t)(end - p));
	char want[9];
	snprintf(want, sizeof want, "%08X", (unsigned)c.crc);
	if (memcmp(end + 4, want, 8)) {
		free(p);
		return;
	}
	*end = 0;
	for (char *l = p + hl, *nl; *l; l = nl + 1) {
		nl = strchr(l, '\n');
		if (!nl)
			break;
		*nl = 0;
		char *tab;
		unsigned long i = strtoul(l, &tab, 16);
		if (tab == l || *tab != '\t' || i >= (unsigned long)m->ndests || unescape(tab + 1) < 0)
			continue;
		struct qdest *d = &m->dests[i];
		if (d->status != Q_PENDING)
			continue;
		free(d->last_error);
		d->last_error = xstrdup(tab + 1);
	}
	free(p);
}

struct qmsg *spool_read_envelope(int fd, const char *qid, const char **why)
{
	struct seal sl;
	if (read_seal(fd, &sl, why) < 0 || check_seal(fd, sl.len, sl.crc, why) < 0)
		return NULL;
	int version = sl.version;
	uint64_t len = sl.len;
	/* dup() shares the offset: start after the seal whatever came before */
	int dfd = lseek(fd, SPOOL_HDR_LEN, SEEK_SET) == SPOOL_HDR_LEN ? dup(fd) : -1;
	FILE *f = dfd >= 0 ? fdopen(dfd, "r") : NULL;
	if (!f) {
		if (dfd >= 0)
			close(dfd);
		*why = "cannot read";
		return NULL;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	off_t off = SPOOL_HDR_LEN;
	struct qmsg *m = NULL;
	*why = "truncated envelope";
	while ((uint64_t)off < len && (n = getline(&line, &cap, f)) > 0) {
		off_t line_off = off;
		off += n;
		if (line[n - 1] != '\n' || (uint64_t)off > len) {
			*why = "truncated envelope";
			goto bad;
		}
		line[--n] = 0;
		if (!m) {
			if (line[0] != 'Q' || line[1] != ' ' || (qid && strcmp(line + 2, qid) != 0)) {
				*why = "queue id does not match the file name";
				goto bad;
			}
			m = qmsg_new(line + 2, "", 0);
			m->attempt_mark = sl.mark;
			m->crashes = sl.crashes;
			m->attempts = sl.attempts;
			m->delay_warned = sl.warned;
			continue;
		}
		switch (line[0]) {
		case 'T':
			m->arrival = (time_t)strtoll(line + 2, NULL, 10);
			m->arrival_precise = (double)m->arrival;
			break;
		case 'S':
			if (version >= 3 && unescape(line + 2) < 0) {
				*why = "bad escape in the sender";
				goto bad;
			}
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
			if (version >= 3 && (unescape(tr) < 0 || unescape(addr) < 0 || unescape(orig) < 0)) {
				*why = "bad escape in a destination line";
				goto bad;
			}
			struct qdest *d = qmsg_add_dest(m, tr, addr, orig);
			if (!d) {
				*why = "bad destination address";
				goto bad;
			}
			d->status = *st;
			d->status_off = line_off + 1;
			d->attempts = (unsigned short)sl.attempts;
			d->next_try = sl.next_try;
			if (d->status != Q_PENDING && d->status != Q_DELIVERED && d->status != Q_BOUNCED) {
				*why = "bad destination status";
				goto bad;
			}
			break;
		}
		case 'M': {      /* M <flags>\t<envid> */
			char *tab = strchr(line, '\t');
			if (line[1] != ' ' || !tab) {
				*why = "bad message facts line";
				goto bad;
			}
			*tab++ = 0;
			if (version >= 3 && unescape(tab) < 0) {
				*why = "bad escape in the message facts line";
				goto bad;
			}
			m->flags = (unsigned)strtoul(line + 2, NULL, 16);
			free(m->envid);
			m->envid = *tab ? xstrdup(tab) : NULL;
			break;
		}
		case 'N': {      /* N <notify>\t<orcpt>, for the D line before */
			char *tab = strchr(line, '\t');
			if (line[1] != ' ' || !tab || !m->ndests) {
				*why = "bad DSN line";
				goto bad;
			}
			*tab++ = 0;
			if (version >= 3 && unescape(tab) < 0) {
				*why = "bad escape in a DSN line";
				goto bad;
			}
			struct qdest *d = &m->dests[m->ndests - 1];
			d->notify = (unsigned char)strtoul(line + 2, NULL, 16);
			free(d->orcpt);
			d->orcpt = *tab ? xstrdup(tab) : NULL;
			break;
		}
		case 'E':
			m->msg_off = off;
			m->end = len;
			m->size = len - (uint64_t)off;
			free(line);
			fclose(f);
			spool_read_notes(fd, m);
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

bool spool_slot_name(const char *s, int *slot)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1]) || *end || errno || v > INT_MAX - 1)
		return false;
	*slot = (int)v;
	return true;
}

static void move_corrupt(struct spool *sp, const char *name, const char *why)
{
	char *dst = xasprintf("%s/corrupt/%s.%lld", spool_dir(sp), name, (long long)time(NULL));
	char *src = xasprintf("%s/queue/%s", spool_dir(sp), name);
	log_error("queue/%s: unreadable queue file (%s): moved to %s", name, why, dst);
	if (rename(src, dst) < 0)
		log_error("queue/%s: cannot move to %s: %m", name, dst);
	free(src);
	free(dst);
}

/* The crash-loop guard (spool.h): m was found with a delivery attempt in
 * progress, so petreld died during it.  Count the crash; a message that
 * was alone in its attempt (mark S) and reached SPOOL_CRASH_LIMIT goes to
 * hold/.  Otherwise it is a suspect: its next attempt runs alone, so a
 * crash then is its own.  Returns false when m was held (or must not be
 * delivered in this run). */
static bool count_crash(struct spool *sp, struct qmsg *m, int fd)
{
	bool alone = m->attempt_mark == SPOOL_ATTEMPT_SOLO;
	if (m->crashes < 9)
		m->crashes++;
	char bytes[2] = { SPOOL_ATTEMPT_SUSPECT, (char)('0' + m->crashes) };
	if (alone && m->crashes >= SPOOL_CRASH_LIMIT) {
		const char *err = "cannot write the queue file";
		/* count and a blank mark travel with it to hold/; if it cannot
		 * move, the mark S goes back, so the next start tries again */
		if (pwrite(fd, bytes + 1, 1, SPOOL_CRASHES_OFF) != 1 ||
		    spool_attempt_mark(fd, SPOOL_ATTEMPT_NONE) < 0 || spool_hold(sp, m, &err) < 0) {
			if (spool_attempt_mark(fd, SPOOL_ATTEMPT_SOLO) < 0)
				log_error("%s: cannot write the queue file: %m", m->qid);
			log_error("%s: petreld died %d times while delivering this message, the last "
			          "time with nothing else being delivered, and it cannot be held (%s): "
			          "not delivered in this run", m->qid, m->crashes, err);
			return false;
		}
		log_error("%s: petreld died %d times while delivering this message, the last time "
		          "with nothing else being delivered: the message is held in %s/hold/%s "
		          "and will not be tried again until released (petrelctl -s %s release %s), "
		          "which gives it one more attempt",
		          m->qid, m->crashes, spool_dir(sp), m->qid, spool_dir(sp), m->qid);
		return false;
	}
	if (pwrite(fd, bytes, 2, SPOOL_ATTEMPT_OFF) != 2)
		log_error("%s: cannot record a crash in the queue file: %m", m->qid);
	log_warn("%s: petreld stopped during a delivery attempt of this message (crash %d; held "
	         "after %d%s): its next attempt runs with nothing else being delivered",
	         m->qid, m->crashes, SPOOL_CRASH_LIMIT, alone ? "" : ", counting only the ones alone");
	m->suspect = true;
	return true;
}

/* One file of queue/: a message still pending (returned), or NULL when the
 * file was free, finished or corrupt (and dealt with). */
static struct qmsg *recover_one(struct spool *sp, int dfd, const char *name, int *freed)
{
	int slot = -1;
	bool is_slot = spool_slot_name(name, &slot);
	const char *why = "neither a slot nor a queue id";
	if (!is_slot && !valid_qid(name)) {
		move_corrupt(sp, name, why);
		return NULL;
	}
	int fd = openat(dfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		log_error("queue/%s: cannot open: %m", name);
		return NULL;
	}
	if (is_slot)
		spool_slot_seen(sp, slot);
	int state = spool_read_state(fd);
	if (is_slot && (state == 0 || state == 'W' || state == 'F')) {
		/* Free, or caught half written (never acknowledged): its bytes go. */
		if (state == 'W') {
			if (ftruncate(fd, 0) < 0)
				log_error("queue/%s: cannot empty: %m", name);
			(*freed)++;
		}
		close(fd);
		spool_slot_free(sp, slot);
		return NULL;
	}
	struct qmsg *m = spool_read_envelope(fd, is_slot ? NULL : name, &why);
	if (!m) {
		close(fd);
		move_corrupt(sp, name, why);
		return NULL;
	}
	m->slot = is_slot ? slot : -1;
	int pending = 0;
	for (int i = 0; i < m->ndests; i++)
		pending += m->dests[i].status == Q_PENDING;
	if (!pending && qmsg_bounce_due(m)) {
		/* Finished, but its bounce was not queued before the crash: the
		 * queue sends it, then removes the file. */
		log_info("%s: bounced destinations not reported yet: reporting now", m->qid);
	} else if (!pending) {
		/* Delivered before the crash; only the clean-up was lost. */
		if (spool_retire(sp, m, fd) < 0)
			log_error("%s: cannot remove: %m", m->qid);
		else
			log_info("%s: removed", m->qid);
		close(fd);
		qmsg_free(&m);
		return NULL;
	}
	if (m->attempt_mark == SPOOL_ATTEMPT_SUSPECT) {
		m->suspect = true;         /* not retried alone since its crash yet */
	} else if (m->attempt_mark != SPOOL_ATTEMPT_NONE && !count_crash(sp, m, fd)) {
		close(fd);                 /* held (or cannot be): not in this run */
		qmsg_free(&m);
		return NULL;
	}
	close(fd);
	return m;
}

int spool_recover(struct spool *sp, struct qmsg ***out, int *nout, struct buf *errs)
{
	char *qpath = xasprintf("%s/queue", spool_dir(sp));
	*out = NULL;
	*nout = 0;
	DIR *d = opendir(qpath);
	if (!d) {
		buf_addf(errs, "spool: cannot read %s: %s\n", qpath, strerror(errno));
		free(qpath);
		return -1;
	}
	int cap = 0, removed = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		struct qmsg *m = recover_one(sp, dirfd(d), de->d_name, &removed);
		if (!m)
			continue;
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
	free(qpath);
	return 0;
}
