/*
 * spool.c - queue slots and the group commit (see spool.h).
 *
 * The committer thread takes every commit waiting at the moment, seals
 * each file (length and CRC in its first line), starts write-back of all
 * of them at once, and waits for their syncs on several threads, so that
 * a journaling filesystem folds them into one commit.  A slot file that is
 * reused needs no directory work; only a batch holding a slot made since
 * the last directory sync syncs queue/ as well.  Results return to the
 * loop through an eventfd.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spool.h"
#include "crc32c.h"
#include "fileio.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

#define SYNCERS 7   /* threads that wait on file syncs besides the committer */

struct commit {
	char qid[QID_MAX];
	int slot;
	int fd;
	uint64_t len;
	bool hold;
	spool_done_fn *done;
	void *arg;
	int ok;
	int errnum;          /* errno of the failure */
	char err[128];
	struct commit *next;
};

#define FREE_MAX 4096                 /* free slots kept; more are removed */
#define SLOT_KEEP_MAX (1024 * 1024)   /* a slot file larger than this is removed when done */

struct spool {
	char *dir;
	int queue_fd, hold_fd;
	pthread_mutex_t free_lock;     /* the free slots: workers add, the loop takes */
	int *free_slots;
	int nfree;
	int next_slot;                 /* above every slot number in use */
	atomic_int created;            /* a slot file was made since queue/ was last synced */
	struct ev_loop *loop;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct commit *todo, *todo_tail;
	struct commit *finished;
	int efd;
	int pending;
	int quit;
	uint64_t last_usec;
	unsigned counter;
	uint64_t batches, committed;   /* statistics, committer thread only */
	/* the batch being synced, shared with the sync threads */
	pthread_t syncers[SYNCERS];
	pthread_cond_t sync_cond, synced_cond;
	struct commit **batch;
	int batch_n, batch_next, batch_done, batch_cap;
};

const char *spool_dir(const struct spool *sp)
{
	return sp->dir;
}

int spool_path(const struct spool *sp, const struct qmsg *m, char *buf, size_t size)
{
	int n = m->slot >= 0 ? snprintf(buf, size, "%s/queue/%d", sp->dir, m->slot)
	                     : snprintf(buf, size, "%s/queue/%s", sp->dir, m->qid);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

void spool_new_qid(struct spool *sp, char qid[QID_MAX])
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	uint64_t us = (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
	if (us <= sp->last_usec) {
		us = sp->last_usec;
		sp->counter++;
	} else {
		sp->counter = 0;
	}
	sp->last_usec = us;
	snprintf(qid, QID_MAX, "%09llX%05llX%02X", (unsigned long long)(us / 1000000),
	         (unsigned long long)(us % 1000000), sp->counter & 0xff);
	if (sp->counter >= 0xff) {      /* never reuse: move to the next microsecond */
		sp->last_usec++;
		sp->counter = 0;
	}
}

/* --- slots --- */

void spool_slot_free(struct spool *sp, int slot)
{
	pthread_mutex_lock(&sp->free_lock);
	if (sp->nfree < FREE_MAX) {
		sp->free_slots[sp->nfree++] = slot;
		slot = -1;
	}
	pthread_mutex_unlock(&sp->free_lock);
	if (slot >= 0) {            /* enough kept */
		char name[16];
		snprintf(name, sizeof name, "%d", slot);
		(void)unlinkat(sp->queue_fd, name, 0);
	}
}

void spool_slot_seen(struct spool *sp, int slot)
{
	pthread_mutex_lock(&sp->free_lock);
	if (slot >= sp->next_slot)
		sp->next_slot = slot + 1;
	pthread_mutex_unlock(&sp->free_lock);
}

int spool_create(struct spool *sp, struct qmsg *m, const char **err)
{
	char name[16];
	for (int tries = 0; tries < 1000; tries++) {
		int slot = -1;
		bool fresh = false;
		pthread_mutex_lock(&sp->free_lock);
		if (sp->nfree) {
			slot = sp->free_slots[--sp->nfree];
		} else if (sp->next_slot < INT_MAX) {
			slot = sp->next_slot++;
			fresh = true;
		}
		pthread_mutex_unlock(&sp->free_lock);
		if (slot < 0)
			break;
		snprintf(name, sizeof name, "%d", slot);
		int fd = fresh ? openat(sp->queue_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)
		               : openat(sp->queue_fd, name, O_RDWR | O_CLOEXEC);
		if (fd >= 0) {
			if (fresh)
				atomic_store(&sp->created, 1);
			m->slot = slot;
			return fd;
		}
		if (errno != EEXIST && errno != ENOENT) {
			*err = strerror(errno);
			if (!fresh)
				spool_slot_free(sp, slot);
			return -1;
		}
		/* a free slot gone missing, or a number someone else has: next */
	}
	*err = "no queue slot available";
	return -1;
}

void spool_abort(struct spool *sp, int slot, int fd)
{
	if (slot < 0) {
		if (fd >= 0)
			close(fd);
		return;
	}
	/* An incomplete message leaves nothing behind: its bytes go now. */
	if (fd >= 0 && ftruncate(fd, 0) == 0) {
		close(fd);
		spool_slot_free(sp, slot);
		return;
	}
	if (fd >= 0)
		close(fd);
	char name[16];
	snprintf(name, sizeof name, "%d", slot);
	if (unlinkat(sp->queue_fd, name, 0) < 0 && errno != ENOENT)
		log_error("slot %d: cannot remove an incomplete message: %m", slot);
}

int spool_retire(struct spool *sp, const struct qmsg *m, int fd)
{
	if (m->slot < 0)
		return unlinkat(sp->queue_fd, m->qid, 0);
	char name[16];
	snprintf(name, sizeof name, "%d", m->slot);
	int own = -1;
	if (fd < 0 && (fd = own = openat(sp->queue_fd, name, O_RDWR | O_CLOEXEC)) < 0)
		return -1;
	int r = 0;
	/* A slot only grows past SLOT_KEEP_MAX with the message it holds:
	 * larger ones were removed when they were done. */
	if (m->end <= SLOT_KEEP_MAX) {
		/* Not synced: if a crash loses the mark, the message is
		 * delivered once more; nothing is lost. */
		if (pwrite(fd, "F", 1, SPOOL_STATE_OFF) == 1)
			spool_slot_free(sp, m->slot);
		else
			r = -1;
	} else {
		r = unlinkat(sp->queue_fd, name, 0);
	}
	if (own >= 0)
		close(own);
	return r;
}

/* --- the crash-loop guard (spool.h: "Delivery attempts") --- */

int spool_attempt_mark(int fd, char mark)
{
	for (;;) {
		ssize_t n = pwrite(fd, &mark, 1, SPOOL_ATTEMPT_OFF);
		if (n == 1)
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n >= 0)
			errno = EIO;
		return -1;
	}
}

int spool_hold(struct spool *sp, struct qmsg *m, const char **err)
{
	char name[QID_MAX > 16 ? QID_MAX : 16];
	if (m->slot >= 0)
		snprintf(name, sizeof name, "%d", m->slot);
	else
		snprintf(name, sizeof name, "%s", m->qid);
	if (renameat2(sp->queue_fd, name, sp->hold_fd, m->qid, RENAME_NOREPLACE) < 0) {
		*err = errno == EEXIST ? "hold/ already has a file of that name" : strerror(errno);
		return -1;
	}
	m->slot = -1;
	/* in exactly one of the two directories after a power cut too; if a
	 * sync fails it is held all the same (a power cut may bring it back
	 * to queue/, where the next start holds it again) */
	if (fsync(sp->hold_fd) < 0 || fsync(sp->queue_fd) < 0)
		log_error("%s: moved to hold/, but syncing the directories failed: %m", m->qid);
	return 0;
}

/* --- operator actions on held messages (control.c) --- */

int spool_release(struct spool *sp, const char *qid, const char **err)
{
	if (renameat2(sp->hold_fd, qid, sp->queue_fd, qid, RENAME_NOREPLACE) < 0) {
		*err = errno == EEXIST ? "queue/ already has a file of that name" : strerror(errno);
		return -1;
	}
	/* as spool_hold: in exactly one of the two after a power cut */
	if (fsync(sp->queue_fd) < 0 || fsync(sp->hold_fd) < 0)
		log_error("%s: moved to queue/, but syncing the directories failed: %m", qid);
	return 0;
}

int spool_delete_held(struct spool *sp, const char *qid, const char **err)
{
	if (unlinkat(sp->hold_fd, qid, 0) < 0) {
		*err = strerror(errno);
		return -1;
	}
	if (fsync(sp->hold_fd) < 0)
		log_error("%s: removed from hold/, but syncing the directory failed: %m", qid);
	return 0;
}

int spool_open_held(const struct spool *sp, const char *qid)
{
	return openat(sp->hold_fd, qid, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
}

int spool_sync_queue_dir(const struct spool *sp)
{
	return fsync(sp->queue_fd);
}

/* --- the seal --- */

enum { CRC_LINE, CRC_STATUS, CRC_MID, CRC_E, CRC_BODY };

void spool_crc_feed(struct spool_crc *c, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && c->st != CRC_BODY) {
		char ch = p[i++];
		switch (c->st) {
		case CRC_LINE:
			c->st = ch == 'D' ? CRC_STATUS : ch == 'E' ? CRC_E : ch == '\n' ? CRC_LINE : CRC_MID;
			break;
		case CRC_STATUS:
			ch = 'P';
			c->st = CRC_MID;
			break;
		case CRC_MID:
			if (ch == '\n')
				c->st = CRC_LINE;
			break;
		case CRC_E:
			c->st = ch == '\n' ? CRC_BODY : CRC_MID;
			break;
		}
		c->crc = crc32c(c->crc, &ch, 1);
	}
	if (i < n)
		c->crc = crc32c(c->crc, p + i, n - i);
}

static void seal_line(char line[SPOOL_HDR_LEN], char state, uint64_t len, uint32_t crc)
{
	char tmp[SPOOL_HDR_LEN + 1];
	snprintf(tmp, sizeof tmp, "PETREL-QUEUE %d %c %016" PRIX64 " %08" PRIX32 " 0000 00000000 -%*s\n",
	         SPOOL_VERSION, state, len, crc, SPOOL_HDR_LEN - SPOOL_RETRY_OFF - 16, "");
	memcpy(line, tmp, SPOOL_HDR_LEN);
}

int spool_write_retry(int fd, int attempts, time_t next_try, bool warned)
{
	char f[SPOOL_RETRY_LEN + 1];
	unsigned long long nt = next_try > 0 ? (unsigned long long)next_try : 0;
	if (attempts > 0xffff)
		attempts = 0xffff;
	if (nt > 0xffffffffull)
		nt = 0xffffffffull;
	snprintf(f, sizeof f, "%04X %08llX %c", (unsigned)attempts, nt, warned ? 'W' : '-');
	return pwrite(fd, f, SPOOL_RETRY_LEN, SPOOL_RETRY_OFF) == SPOOL_RETRY_LEN ? 0 : -1;
}

void spool_seal_buf(char *file, size_t len, char state)
{
	struct spool_crc c = {0};
	spool_crc_feed(&c, file + SPOOL_HDR_LEN, len - SPOOL_HDR_LEN);
	seal_line(file, state, len, c.crc);
}

/* Read the file back (from the page cache) and write its seal line. */
static int seal_file(struct commit *c)
{
	char chunk[65536];
	struct spool_crc crc = {0};
	uint64_t off = SPOOL_HDR_LEN;
	if (c->len < SPOOL_HDR_LEN) {
		errno = EINVAL;
		return -1;
	}
	while (off < c->len) {
		size_t want = c->len - off < sizeof chunk ? (size_t)(c->len - off) : sizeof chunk;
		ssize_t n = pread_all(c->fd, chunk, want, (off_t)off);
		if (n < 0)
			return -1;
		if ((size_t)n != want) {
			errno = EIO;
			return -1;
		}
		spool_crc_feed(&crc, chunk, want);
		off += want;
	}
	char line[SPOOL_HDR_LEN];
	seal_line(line, 'Q', c->len, crc.crc);
	return pwrite(c->fd, line, sizeof line, 0) == (ssize_t)sizeof line ? 0 : -1;
}

/* One envelope field: a backslash as "\\", a control byte (TAB and the
 * line ends among them) as "\xHH", so a field never holds the TAB or LF
 * that separate fields and records; every other byte as it is. */
static void add_field(struct buf *b, const char *s)
{
	while (*s) {
		size_t n = 0;
		while (s[n] && s[n] != '\\' && (unsigned char)s[n] >= 0x20 && s[n] != 0x7f)
			n++;
		buf_add(b, s, n);
		s += n;
		if (*s == '\\')
			buf_add(b, "\\\\", 2);
		else if (*s)
			buf_addf(b, "\\x%02X", (unsigned)(unsigned char)*s);
		if (*s)
			s++;
	}
}

int spool_write_notes(int fd, const struct qmsg *m)
{
	/* never past the end of a file cut short under us: the hole would
	 * read as zeros where the message was */
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -1;
	if ((uint64_t)st.st_size < m->end) {
		errno = EIO;
		return -1;
	}
	struct buf b = {0};
	buf_addf(&b, "PETREL-NOTES %s\n", m->qid);
	for (int i = 0; i < m->ndests; i++) {
		const struct qdest *d = &m->dests[i];
		if (d->status != Q_PENDING || !d->last_error)
			continue;
		char cut[SPOOL_NOTE_MAX + 1];
		snprintf(cut, sizeof cut, "%s", d->last_error);
		buf_addf(&b, "%X\t", (unsigned)i);
		add_field(&b, cut);
		buf_add(&b, "\n", 1);
	}
	struct spool_crc c = {0};
	spool_crc_feed(&c, b.data, b.len);
	buf_addf(&b, "END %08X\n", (unsigned)c.crc);
	ssize_t n = pwrite(fd, b.data, b.len, (off_t)m->end);
	int ok = n == (ssize_t)b.len ? 0 : -1;
	if (n >= 0 && !ok)
		errno = ENOSPC;
	buf_free(&b);
	return ok;
}

void spool_envelope(struct buf *b, struct qmsg *m)
{
	char line[SPOOL_HDR_LEN];
	size_t base = b->len;
	seal_line(line, 'W', 0, 0);
	buf_add(b, line, sizeof line);
	buf_addf(b, "Q %s\nT %lld\nS ", m->qid, (long long)m->arrival);
	add_field(b, m->sender);
	buf_add(b, "\n", 1);
	if (m->flags || m->envid) {
		buf_addf(b, "M %X\t", m->flags);
		add_field(b, m->envid ? m->envid : "");
		buf_add(b, "\n", 1);
	}
	for (int i = 0; i < m->ndests; i++) {
		struct qdest *d = &m->dests[i];
		d->status_off = (off_t)(b->len - base) + 1;
		buf_addf(b, "D%c\t", d->status);
		add_field(b, d->transport);
		buf_add(b, "\t", 1);
		add_field(b, d->address);
		buf_add(b, "\t", 1);
		add_field(b, d->orig);
		buf_add(b, "\n", 1);
		if (d->notify || d->orcpt) {
			buf_addf(b, "N %X\t", d->notify);
			add_field(b, d->orcpt ? d->orcpt : "");
			buf_add(b, "\n", 1);
		}
	}
	buf_adds(b, "E\n");
	m->msg_off = (off_t)(b->len - base);
}

int spool_replace(struct spool *sp, struct qmsg *m, int *old_slot, const char *head,
                  size_t head_len, const char *body, size_t body_len, const char **err)
{
	int was = m->slot;
	int fd = spool_create(sp, m, err);
	if (fd < 0) {
		m->slot = was;
		return -1;
	}
	if (write_all(fd, head, head_len) < 0 || write_all(fd, body, body_len) < 0) {
		int e = errno;
		*err = strerror(e);
		spool_abort(sp, m->slot, fd);
		m->slot = was;
		errno = e;          /* the caller's reply depends on it (ENOSPC) */
		return -1;
	}
	*old_slot = was;
	return fd;
}

/* --- the committer --- */

/* Take the next file of the batch and sync it; false when none is left.
 * Called with sp->lock held; drops it around the sync. */
static bool sync_one(struct spool *sp)
{
	if (sp->batch_next >= sp->batch_n)
		return false;
	struct commit *c = sp->batch[sp->batch_next++];
	pthread_mutex_unlock(&sp->lock);
	c->ok = fdatasync(c->fd) == 0;
	c->errnum = c->ok ? 0 : errno;
	if (!c->ok)
		snprintf(c->err, sizeof c->err, "sync: %s", strerror(errno));
	pthread_mutex_lock(&sp->lock);
	if (++sp->batch_done == sp->batch_n)
		pthread_cond_signal(&sp->synced_cond);
	return true;
}

static void *syncer_main(void *arg)
{
	struct spool *sp = arg;
	pthread_mutex_lock(&sp->lock);
	while (!sp->quit) {
		if (!sync_one(sp))
			pthread_cond_wait(&sp->sync_cond, &sp->lock);
	}
	pthread_mutex_unlock(&sp->lock);
	return NULL;
}

/* A failed commit leaves nothing: the slot is emptied and free again. */
static void commit_failed(struct spool *sp, struct commit *c)
{
	spool_abort(sp, c->slot, c->fd);
	c->fd = -1;
}

static void commit_batch(struct spool *sp, struct commit *list)
{
	int n = 0;
	for (struct commit *c = list; c; c = c->next) {
		c->ok = seal_file(c) == 0;
		if (!c->ok) {
			c->errnum = errno;
			snprintf(c->err, sizeof c->err, "seal: %s", strerror(errno));
			continue;
		}
		(void)sync_file_range(c->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		n++;
	}
	/* The files are synced concurrently: a journaling filesystem folds
	 * concurrent syncs into one commit, where one after another would
	 * each wait for their own. */
	pthread_mutex_lock(&sp->lock);
	if (n > sp->batch_cap) {
		sp->batch_cap = n * 2;
		sp->batch = xrealloc(sp->batch, (size_t)sp->batch_cap * sizeof *sp->batch);
	}
	n = 0;
	for (struct commit *c = list; c; c = c->next)
		if (c->ok)
			sp->batch[n++] = c;
	sp->batch_n = n;
	sp->batch_next = sp->batch_done = 0;
	if (n > 1)
		pthread_cond_broadcast(&sp->sync_cond);
	while (sync_one(sp))
		;
	while (sp->batch_done < sp->batch_n)
		pthread_cond_wait(&sp->synced_cond, &sp->lock);
	sp->batch_n = 0;
	pthread_mutex_unlock(&sp->lock);
	/* A slot file made since the last time: its directory entry must be
	 * durable too.  Every slot in this batch was made before it began. */
	const char *dir_err = NULL;
	if (atomic_exchange(&sp->created, 0) && fsync(sp->queue_fd) < 0) {
		dir_err = "sync queue directory";
		atomic_store(&sp->created, 1);   /* the next batch must try again */
	}
	/* Held messages leave the slots for hold/QID: both directories are
	 * synced so that the message is in exactly one of them. */
	int held = 0;
	for (struct commit *c = list; c; c = c->next) {
		if (!c->ok || !c->hold || dir_err)
			continue;
		char name[16];
		snprintf(name, sizeof name, "%d", c->slot);
		if (renameat2(sp->queue_fd, name, sp->hold_fd, c->qid, RENAME_NOREPLACE) < 0) {
			c->ok = 0;
			c->errnum = errno;
			snprintf(c->err, sizeof c->err, "move to hold: %s", strerror(errno));
		} else {
			c->slot = -1;
			held++;
		}
	}
	if (held && (fsync(sp->hold_fd) < 0 || fsync(sp->queue_fd) < 0))
		dir_err = "sync hold directory";
	if (dir_err) {
		/* The files may or may not survive a crash: refuse them all.  A
		 * message that does survive is delivered once more than asked. */
		int e = errno;
		for (struct commit *c = list; c; c = c->next)
			if (c->ok) {
				c->ok = 0;
				c->errnum = e;
				snprintf(c->err, sizeof c->err, "%s: %s", dir_err, strerror(e));
			}
	}
	for (struct commit *c = list; c; c = c->next) {
		if (!c->ok) {
			if (c->slot < 0 && c->hold)     /* already in hold/: take it back */
				(void)unlinkat(sp->hold_fd, c->qid, 0);
			commit_failed(sp, c);
		} else {
			close(c->fd);
			c->fd = -1;
			sp->committed++;
		}
	}
	sp->batches++;
}

static void *committer_main(void *arg)
{
	struct spool *sp = arg;
	pthread_mutex_lock(&sp->lock);
	for (;;) {
		while (!sp->todo && !sp->quit)
			pthread_cond_wait(&sp->cond, &sp->lock);
		if (!sp->todo)
			break;
		struct commit *list = sp->todo;
		sp->todo = sp->todo_tail = NULL;
		pthread_mutex_unlock(&sp->lock);
		commit_batch(sp, list);
		pthread_mutex_lock(&sp->lock);
		struct commit *last = list;
		while (last->next)
			last = last->next;
		last->next = sp->finished;
		sp->finished = list;
		uint64_t one = 1;
		if (write(sp->efd, &one, sizeof one) < 0) {
			/* cannot overflow */
		}
	}
	pthread_mutex_unlock(&sp->lock);
	return NULL;
}

static void on_committed(struct ev_loop *loop, int fd, int mask, void *arg)
{
	(void)loop;
	(void)mask;
	struct spool *sp = arg;
	uint64_t v;
	if (read(fd, &v, sizeof v) < 0) {
		/* drained by an earlier wakeup */
	}
	pthread_mutex_lock(&sp->lock);
	struct commit *list = sp->finished;
	sp->finished = NULL;
	pthread_mutex_unlock(&sp->lock);
	while (list) {
		struct commit *n = list->next;
		sp->pending--;
		list->done(list->arg, list->ok, list->errnum, list->err);
		free(list);
		list = n;
	}
}

void spool_commit(struct spool *sp, struct qmsg *m, int fd, bool hold, spool_done_fn *done,
                  void *arg)
{
	struct commit *c = xcalloc(1, sizeof *c);
	c->hold = hold;
	snprintf(c->qid, sizeof c->qid, "%s", m->qid);
	c->slot = m->slot;
	c->fd = fd;
	off_t end = lseek(fd, 0, SEEK_CUR);
	c->len = end > 0 ? (uint64_t)end : 0;
	m->end = c->len;
	c->done = done;
	c->arg = arg;
	sp->pending++;
	pthread_mutex_lock(&sp->lock);
	if (sp->todo_tail)
		sp->todo_tail->next = c;
	else
		sp->todo = c;
	sp->todo_tail = c;
	pthread_cond_signal(&sp->cond);
	pthread_mutex_unlock(&sp->lock);
}

uint64_t spool_free_bytes(const struct spool *sp)
{
	struct statvfs st;
	if (fstatvfs(sp->queue_fd, &st) < 0)
		return UINT64_MAX;      /* cannot tell: let the writes say */
	return (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
}

int spool_commits_pending(const struct spool *sp)
{
	return sp->pending;
}

static int open_subdir(const char *dir, const char *sub, struct buf *errs)
{
	char *p = xasprintf("%s/%s", dir, sub);
	if (mkdir(p, 0700) < 0 && errno != EEXIST) {
		buf_addf(errs, "spool: cannot create %s: %s\n", p, strerror(errno));
		free(p);
		return -1;
	}
	int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		buf_addf(errs, "spool: cannot open %s: %s\n", p, strerror(errno));
	free(p);
	return fd;
}

int spool_mkdirs(const char *path)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			free(p);
			return -1;
		}
		*s = '/';
	}
	int r = mkdir(p, 0700) < 0 && errno != EEXIST ? -1 : 0;
	free(p);
	return r;
}

struct spool *spool_open(const char *dir, struct ev_loop *loop, struct buf *errs)
{
	if (spool_mkdirs(dir) < 0) {
		buf_addf(errs, "spool: cannot create %s: %s\n", dir, strerror(errno));
		return NULL;
	}
	struct spool *sp = xcalloc(1, sizeof *sp);
	sp->dir = xstrdup(dir);
	sp->loop = loop;
	sp->queue_fd = open_subdir(dir, "queue", errs);
	sp->hold_fd = open_subdir(dir, "hold", errs);
	int cfd = open_subdir(dir, "corrupt", errs);
	if (cfd >= 0)
		close(cfd);
	if (sp->queue_fd < 0 || sp->hold_fd < 0 || cfd < 0) {
		if (sp->queue_fd >= 0)
			close(sp->queue_fd);
		if (sp->hold_fd >= 0)
			close(sp->hold_fd);
		free(sp->dir);
		free(sp);
		return NULL;
	}
	/* The directory entries themselves must survive a crash too. */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	const char *err;
	sp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (sp->efd < 0)
		log_fatal("eventfd: %m");
	if (ev_fd_set(loop, sp->efd, EV_READ, on_committed, sp, &err) < 0)
		log_fatal("spool eventfd: %s", err);
	pthread_mutex_init(&sp->lock, NULL);
	pthread_cond_init(&sp->cond, NULL);
	pthread_mutex_init(&sp->free_lock, NULL);
	sp->free_slots = xcalloc(FREE_MAX, sizeof *sp->free_slots);
	pthread_cond_init(&sp->sync_cond, NULL);
	pthread_cond_init(&sp->synced_cond, NULL);
	if (pthread_create(&sp->thread, NULL, committer_main, sp) != 0)
		log_fatal("pthread_create failed");
	for (int i = 0; i < SYNCERS; i++)
		if (pthread_create(&sp->syncers[i], NULL, syncer_main, sp) != 0)
			log_fatal("pthread_create failed");
	return sp;
}

void spool_close(struct spool **spp)
{
	struct spool *sp = *spp;
	if (!sp)
		return;
	pthread_mutex_lock(&sp->lock);
	sp->quit = 1;
	pthread_cond_broadcast(&sp->cond);
	pthread_mutex_unlock(&sp->lock);
	pthread_join(sp->thread, NULL);
	pthread_mutex_lock(&sp->lock);
	pthread_cond_broadcast(&sp->sync_cond);
	pthread_mutex_unlock(&sp->lock);
	for (int i = 0; i < SYNCERS; i++)
		pthread_join(sp->syncers[i], NULL);
	free(sp->batch);
	pthread_cond_destroy(&sp->sync_cond);
	pthread_cond_destroy(&sp->synced_cond);
	on_committed(sp->loop, sp->efd, EV_READ, sp);
	if (sp->batches)
		log_info("spool: %llu messages committed in %llu group commits",
		         (unsigned long long)sp->committed, (unsigned long long)sp->batches);
	ev_fd_del(sp->loop, sp->efd);
	close(sp->efd);
	close(sp->queue_fd);
	close(sp->hold_fd);
	free(sp->free_slots);
	pthread_mutex_destroy(&sp->free_lock);
	pthread_mutex_destroy(&sp->lock);
	pthread_cond_destroy(&sp->cond);
	free(sp->dir);
	free(sp);
	*spp = NULL;
}
