/*
 * spool.c - queue files and the group commit (see spool.h).
 *
 * The committer thread takes every commit waiting at the moment, starts
 * write-back of all their data at once, waits for each file, renames them
 * all into queue/, and syncs queue/ once.  Under load many sessions share
 * one directory sync and one journal commit; alone, a message costs what
 * it must (two syncs).  Results return to the loop through an eventfd.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spool.h"
#include "fileio.h"
#include "log.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define SYNCERS 7   /* threads that wait on file syncs besides the committer */

struct commit {
	char qid[QID_MAX];
	int fd;
	bool hold;
	spool_done_fn *done;
	void *arg;
	int ok;
	char err[128];
	struct commit *next;
};

#define FREE_MAX 4096  /* queue files kept for reuse */

struct spool {
	char *dir;
	int incoming_fd, queue_fd, hold_fd, free_fd;
	pthread_mutex_t free_lock;     /* the free list: workers add, the loop takes */
	unsigned *free_names;          /* free/N */
	int nfree;
	unsigned free_counter;
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

int spool_queue_path(const struct spool *sp, const char *qid, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/queue/%s", sp->dir, qid);
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

int spool_create(struct spool *sp, const char *qid, const char **err)
{
	unsigned n = 0;
	bool reuse = false;
	pthread_mutex_lock(&sp->free_lock);
	if (sp->nfree) {
		n = sp->free_names[--sp->nfree];
		reuse = true;
	}
	pthread_mutex_unlock(&sp->free_lock);
	if (reuse) {
		char name[16];
		snprintf(name, sizeof name, "%u", n);
		if (renameat2(sp->free_fd, name, sp->incoming_fd, qid, RENAME_NOREPLACE) == 0) {
			int fd = openat(sp->incoming_fd, qid, O_RDWR | O_TRUNC | O_CLOEXEC);
			if (fd >= 0)
				return fd;
			(void)unlinkat(sp->incoming_fd, qid, 0);
		}
		/* fall through to a new file */
	}
	int fd = openat(sp->incoming_fd, qid, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		*err = strerror(errno);
	return fd;
}

int spool_retire(struct spool *sp, const char *qid)
{
	pthread_mutex_lock(&sp->free_lock);
	bool keep = sp->nfree < FREE_MAX;
	unsigned n = keep ? ++sp->free_counter : 0;
	pthread_mutex_unlock(&sp->free_lock);
	if (keep) {
		char name[16];
		snprintf(name, sizeof name, "%u", n);
		if (renameat(sp->queue_fd, qid, sp->free_fd, name) == 0) {
			pthread_mutex_lock(&sp->free_lock);
			sp->free_names[sp->nfree++] = n;
			pthread_mutex_unlock(&sp->free_lock);
			return 0;
		}
		if (errno == ENOENT)
			return -1;
	}
	return unlinkat(sp->queue_fd, qid, 0);
}

/* At start: files in free/ are reused (their old contents are never read). */
static void free_scan(struct spool *sp)
{
	int fd = dup(sp->free_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	while (d && (de = readdir(d))) {
		char *end;
		unsigned long n = strtoul(de->d_name, &end, 10);
		if (de->d_name[0] == '.' || *end || n == 0 || n > UINT_MAX)
			continue;
		if (sp->nfree < FREE_MAX) {
			sp->free_names[sp->nfree++] = (unsigned)n;
			if (n > sp->free_counter)
				sp->free_counter = (unsigned)n;
		} else {
			(void)unlinkat(sp->free_fd, de->d_name, 0);
		}
	}
	if (d)
		closedir(d);
	else if (fd >= 0)
		close(fd);
}

void spool_abort(struct spool *sp, const char *qid, int fd)
{
	if (fd >= 0)
		close(fd);
	if (unlinkat(sp->incoming_fd, qid, 0) < 0 && errno != ENOENT)
		log_error("%s: cannot remove incomplete message: %m", qid);
}

void spool_envelope(struct buf *b, struct qmsg *m)
{
	buf_addf(b, "PETREL-QUEUE 1\nQ %s\nT %lld\nS %s\n", m->qid, (long long)m->arrival, m->sender);
	for (int i = 0; i < m->ndests; i++) {
		struct qdest *d = &m->dests[i];
		d->status_off = (off_t)b->len + 1;
		buf_addf(b, "D%c\t%s\t%s\t%s\n", d->status, d->transport, d->address, d->orig);
	}
	buf_adds(b, "E\n");
	m->msg_off = (off_t)b->len;
}

int spool_replace(struct spool *sp, const char *qid, const char *head, size_t head_len,
                  const char *body, size_t body_len, const char **err)
{
	char tmp[QID_MAX + 8];
	snprintf(tmp, sizeof tmp, "%s.new", qid);
	int fd = openat(sp->incoming_fd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		*err = strerror(errno);
		return -1;
	}
	if (write_all(fd, head, head_len) < 0 || write_all(fd, body, body_len) < 0 ||
	    renameat(sp->incoming_fd, tmp, sp->incoming_fd, qid) < 0) {
		*err = strerror(errno);
		close(fd);
		(void)unlinkat(sp->incoming_fd, tmp, 0);
		return -1;
	}
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

static void commit_batch(struct spool *sp, struct commit *list)
{
	int n = 0;
	for (struct commit *c = list; c; c = c->next) {
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
	for (struct commit *c = list; c; c = c->next) {
		close(c->fd);
		c->fd = -1;
	}
	int renamed = 0;
	for (struct commit *c = list; c; c = c->next) {
		if (!c->ok)
			continue;
		if (renameat2(sp->incoming_fd, c->qid, c->hold ? sp->hold_fd : sp->queue_fd, c->qid,
		              RENAME_NOREPLACE) < 0) {
			c->ok = 0;
			snprintf(c->err, sizeof c->err, "rename into queue: %s", strerror(errno));
		} else {
			renamed++;
		}
	}
	int held = 0;
	for (struct commit *c = list; c; c = c->next)
		held += c->ok && c->hold;
	if ((renamed > held && fsync(sp->queue_fd) < 0) || (held && fsync(sp->hold_fd) < 0)) {
		/* The renames may or may not survive a crash: refuse them all.  A
		 * message that does survive is delivered once more than asked. */
		for (struct commit *c = list; c; c = c->next)
			if (c->ok) {
				c->ok = 0;
				snprintf(c->err, sizeof c->err, "sync queue directory: %s", strerror(errno));
			}
	}
	for (struct commit *c = list; c; c = c->next)
		if (!c->ok)
			(void)unlinkat(sp->incoming_fd, c->qid, 0);
	sp->batches++;
	sp->committed += (uint64_t)renamed;
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
		list->done(list->arg, list->ok, list->err);
		free(list);
		list = n;
	}
}

void spool_commit(struct spool *sp, const char *qid, int fd, bool hold, spool_done_fn *done,
                  void *arg)
{
	struct commit *c = xcalloc(1, sizeof *c);
	c->hold = hold;
	snprintf(c->qid, sizeof c->qid, "%s", qid);
	c->fd = fd;
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

static int mkdir_p(const char *path)
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
	if (mkdir_p(dir) < 0) {
		buf_addf(errs, "spool: cannot create %s: %s\n", dir, strerror(errno));
		return NULL;
	}
	struct spool *sp = xcalloc(1, sizeof *sp);
	sp->dir = xstrdup(dir);
	sp->loop = loop;
	sp->incoming_fd = open_subdir(dir, "incoming", errs);
	sp->queue_fd = open_subdir(dir, "queue", errs);
	sp->hold_fd = open_subdir(dir, "hold", errs);
	sp->free_fd = open_subdir(dir, "free", errs);
	int cfd = open_subdir(dir, "corrupt", errs);
	if (cfd >= 0)
		close(cfd);
	if (sp->incoming_fd < 0 || sp->queue_fd < 0 || sp->hold_fd < 0 || sp->free_fd < 0 || cfd < 0) {
		if (sp->free_fd >= 0)
			close(sp->free_fd);
		if (sp->incoming_fd >= 0)
			close(sp->incoming_fd);
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
	sp->free_names = xcalloc(FREE_MAX, sizeof *sp->free_names);
	free_scan(sp);
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
	close(sp->incoming_fd);
	close(sp->queue_fd);
	close(sp->hold_fd);
	close(sp->free_fd);
	free(sp->free_names);
	pthread_mutex_destroy(&sp->free_lock);
	pthread_mutex_destroy(&sp->lock);
	pthread_cond_destroy(&sp->cond);
	free(sp->dir);
	free(sp);
	*spp = NULL;
}
