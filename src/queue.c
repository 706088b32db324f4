/*
 * queue.c - the delivery scheduler (see queue.h).
 *
 * Messages wait in a run list; at most 2 x delivery_workers are handed to
 * worker threads at once.  A worker delivers every pending destination of
 * its message in turn, records each final status byte in the queue file
 * (no sync: after a crash a destination may be delivered again, never
 * lost), and removes the file when nothing is pending.  Back on the loop a
 * message with deferred destinations gets a retry timer.
 *
 * Crash-loop guard (spool.h, "Delivery attempts"): each attempt is marked
 * in the queue file while the transports run.  A message recovery found
 * in flight at a crash (m->suspect) is tried alone: it waits until nothing
 * else is being delivered, and nothing else starts until it is done, so
 * that a crash then is its own and recovery can hold it.
 */
#include "queue.h"
#include "bounce.h"
#include "delivery.h"
#include "log.h"
#include "mem.h"
#include "module_load.h"
#include "server.h"
#include "smtp_parse.h"
#include "spool.h"
#include "worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

struct queue {
	struct server *srv;
	struct qmsg *run_head, *run_tail;
	int active;
	int nmsgs;
	struct qmsg **all;      /* every message held, for shutdown */
	int nall, capall;
	bool solo_running;      /* a suspect's attempt, alone: start nothing else */
};

struct job {
	struct qmsg *m;
	struct module **mods;   /* per destination; NULL: transport missing */
	struct buf headers;     /* the message's header section, for a bounce */
	bool retire_after_report;  /* done, but its bounce must be queued first */
	bool solo;              /* the attempt of a suspect, with nothing else running */
};

static double now_f(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* --- worker side --- */

static const char *result_word(int r)
{
	return r == PETREL_DELIVERED ? "sent" : r == PETREL_BOUNCE ? "bounced" : "deferred";
}

static void deliver_work(void *arg)
{
	struct job *j = arg;
	struct qmsg *m = j->m;
	struct server *srv = m->srv;
	char path[4096];
	if (spool_path(srv->spool, m, path, sizeof path) < 0)
		return;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		log_error("%s: cannot open queue file: %m", m->qid);
		return;
	}
	if (spool_attempt_mark(fd, j->solo ? SPOOL_ATTEMPT_SOLO : SPOOL_ATTEMPT_SHARED) < 0)
		log_error("%s: cannot mark the delivery attempt: %m", m->qid);
	int pending = 0;
	for (int i = 0; i < m->ndests; i++) {
		struct qdest *d = &m->dests[i];
		if (d->status != Q_PENDING)
			continue;
		struct petrel_delivery dl = { .m = m, .d = d, .fd = fd, .pos = m->msg_off };
		int r;
		if (!j->mods[i]) {
			r = PETREL_DEFER;
			snprintf(dl.status, sizeof dl.status, "transport %s is not loaded", d->transport);
		} else {
			r = j->mods[i]->desc->transport->deliver(j->mods[i]->state, &dl);
			if (r != PETREL_DELIVERED && r != PETREL_BOUNCE)
				r = PETREL_DEFER;
			if (!dl.status[0])
				snprintf(dl.status, sizeof dl.status, "%s", result_word(r));
		}
		if (r != PETREL_DEFER) {
			char st = r == PETREL_DELIVERED ? Q_DELIVERED : Q_BOUNCED;
			if (st == Q_BOUNCED) {
				free(d->last_error);
				d->last_error = xstrdup(dl.status);
			}
			if (pwrite(fd, &st, 1, d->status_off) != 1)
				log_error("%s: cannot record delivery status: %m", m->qid);
			d->status = st;
		} else {
			pending++;
			free(d->last_error);
			d->last_error = xstrdup(dl.status);
		}
		char orig[600] = "";
		if (strcmp(d->orig, d->address))
			snprintf(orig, sizeof orig, ", orig_to=<%s>", d->orig);
		log_info("%s: to=<%s>%s, relay=%s, delay=%.2f, status=%s (%s)", m->qid, d->address,
		         orig, d->transport, now_f() - m->arrival_precise, result_word(r), dl.status);
	}
	/* before the slot can be retired and reused */
	if (spool_attempt_mark(fd, SPOOL_ATTEMPT_NONE) < 0)
		log_error("%s: cannot clear the delivery attempt mark: %m", m->qid);
	bool report = qmsg_bounce_due(m);
	if (report)
		bounce_capture_headers(fd, m, &j->headers);
	if (!pending && report) {
		j->retire_after_report = true;      /* bounce_send() removes it */
	} else if (!pending) {
		if (spool_retire(srv->spool, m, fd) < 0)
			log_error("%s: cannot remove queue file: %m", m->qid);
		else
			log_info("%s: removed", m->qid);
	}
	close(fd);
}

/* --- loop side --- */

static void kick(struct queue *q);

static void forget(struct queue *q, struct qmsg *m)
{
	int i = m->qindex;
	q->all[i] = q->all[--q->nall];
	q->all[i]->qindex = i;
	q->nmsgs--;
	ev_timer_stop(q->srv->loop, &m->retry);
	qmsg_free(&m);
}

static void retry_due(struct ev_loop *loop, void *arg)
{
	(void)loop;
	struct qmsg *m = arg;
	struct queue *q = m->srv->queue;
	m->next = NULL;
	if (q->run_tail)
		q->run_tail->next = m;
	else
		q->run_head = m;
	q->run_tail = m;
	kick(q);
}

/* Try m again after the backoff of its attempts so far. */
static void schedule_retry(struct qmsg *m)
{
	struct config *cfg = m->srv->cfg;
	uint64_t delay = (uint64_t)cfg->retry_initial;
	for (int i = 1; i < m->attempts && delay < (uint64_t)cfg->retry_max; i++)
		delay *= 2;
	if (delay > (uint64_t)cfg->retry_max)
		delay = (uint64_t)cfg->retry_max;
	m->retry.cb = retry_due;
	if (!m->srv->stopping)
		ev_timer_start(m->srv->loop, &m->retry, delay * 1000);
}

/* The report could not be written: m stays, and its bounced destinations
 * are reported on the next attempt (which finds nothing else to do). */
static void report_later(struct qmsg *m)
{
	for (int i = 0; i < m->ndests; i++)
		if (m->dests[i].status == Q_BOUNCED)
			m->dests[i].reported = false;
	m->attempts++;
	schedule_retry(m);
}

/* Returns false when m must stay (its report could not be written). */
static bool expire(struct qmsg *m)
{
	char path[4096];
	struct buf headers = {0};
	int fd = spool_path(m->srv->spool, m, path, sizeof path) == 0
	             ? open(path, O_RDWR | O_CLOEXEC) : -1;
	if (fd >= 0 && m->sender[0])
		bounce_capture_headers(fd, m, &headers);
	for (int i = 0; i < m->ndests; i++) {
		struct qdest *d = &m->dests[i];
		if (d->status != Q_PENDING)
			continue;
		d->status = Q_BOUNCED;
		d->expired = true;
		if (fd >= 0 && pwrite(fd, "B", 1, d->status_off) != 1)
			log_error("%s: cannot record bounce: %m", m->qid);
		log_info("%s: to=<%s>, relay=%s, status=bounced (message expired after %d attempts: %s)",
		         m->qid, d->address, d->transport, m->attempts,
		         d->last_error ? d->last_error : "deferred");
	}
	if (fd >= 0)
		close(fd);
	bool done = bounce_send(m->srv, m, &headers, true);   /* then removes the file */
	buf_free(&headers);
	return done;
}

static void deliver_done(void *arg)
{
	struct job *j = arg;
	struct qmsg *m = j->m;
	struct queue *q = m->srv->queue;
	bool reported = bounce_send(m->srv, m, &j->headers, j->retire_after_report);
	bool must_stay = j->retire_after_report && !reported;
	if (j->solo) {
		q->solo_running = false;
		m->suspect = false;     /* it did not crash alone: a message like others */
	}
	if (!reported)          /* not written: the next attempt reports them */
		for (int i = 0; i < m->ndests; i++)
			if (m->dests[i].status == Q_BOUNCED)
				m->dests[i].reported = false;
	buf_free(&j->headers);
	free(j->mods);
	free(j);
	q->active--;
	int pending = 0;
	for (int i = 0; i < m->ndests; i++)
		pending += m->dests[i].status == Q_PENDING;
	if (must_stay) {
		report_later(m);
	} else if (!pending) {
		forget(q, m);
	} else {
		m->attempts++;
		if (time(NULL) - m->arrival >= m->srv->cfg->queue_lifetime) {
			if (expire(m))
				forget(q, m);
			else
				report_later(m);
		} else {
			schedule_retry(m);
		}
	}
	kick(q);
}

static void kick(struct queue *q)
{
	struct server *srv = q->srv;
	int max_active = srv->cfg->delivery_workers * 2;
	while (!srv->stopping && q->active < max_active && q->run_head && !q->solo_running) {
		struct qmsg *m = q->run_head;
		if (m->suspect && q->active > 0)
			break;              /* it runs alone: let the others finish */
		q->run_head = m->next;
		if (!q->run_head)
			q->run_tail = NULL;
		m->next = NULL;
		struct job *j = xcalloc(1, sizeof *j);
		j->m = m;
		j->solo = q->solo_running = m->suspect;
		j->mods = xcalloc((size_t)m->ndests, sizeof *j->mods);
		for (int i = 0; i < m->ndests; i++) {
			struct module *mod = module_find(&srv->mods, m->dests[i].transport);
			j->mods[i] = mod && mod->desc->transport ? mod : NULL;
		}
		q->active++;
		workers_submit(srv->workers, deliver_work, deliver_done, j);
	}
}

struct queue *queue_new(struct server *srv)
{
	struct queue *q = xcalloc(1, sizeof *q);
	q->srv = srv;
	return q;
}

void queue_add(struct queue *q, struct qmsg *m)
{
	m->srv = q->srv;
	m->next = NULL;
	if (q->nall == q->capall) {
		q->capall = q->capall ? q->capall * 2 : 256;
		q->all = xrealloc(q->all, (size_t)q->capall * sizeof *q->all);
	}
	m->qindex = q->nall;
	q->all[q->nall++] = m;
	q->nmsgs++;
	if (q->run_tail)
		q->run_tail->next = m;
	else
		q->run_head = m;
	q->run_tail = m;
	kick(q);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void queue_rescan(struct queue *q)
{
	struct server *srv = q->srv;
	char **known = xcalloc((size_t)q->nall + 1, sizeof *known);
	for (int i = 0; i < q->nall; i++)
		known[i] = q->all[i]->qid;
	int nknown = q->nall;
	qsort(known, (size_t)nknown, sizeof *known, cmp_str);
	char *dir = xasprintf("%s/queue", spool_dir(srv->spool));
	DIR *d = opendir(dir);
	struct dirent *de;
	int added = 0;
	while (d && (de = readdir(d))) {
		char *name = de->d_name;
		int slot;
		/* slots are the daemon's own; operators release files named by id */
		if (name[0] == '.' || spool_slot_name(name, &slot) ||
		    bsearch(&name, known, (size_t)nknown, sizeof *known, cmp_str))
			continue;
		const char *why = "cannot open";
		int fd = strlen(name) < QID_MAX ? openat(dirfd(d), name, O_RDONLY | O_CLOEXEC) : -1;
		struct qmsg *m = fd >= 0 ? spool_read_envelope(fd, name, &why) : NULL;
		if (fd >= 0)
			close(fd);
		if (!m) {
			log_warn("%s: not taken into the queue: %s", name, why);
			continue;
		}
		m->slot = -1;
		m->suspect = m->crashes > 0;   /* it crashed the daemon before: alone */
		log_info("%s: released into the queue", name);
		queue_add(q, m);
		added++;
	}
	if (d)
		closedir(d);
	free(dir);
	free(known);
	/* flush: deferred messages are tried now */
	int flushed = 0;
	for (int i = 0; i < q->nall; i++) {
		struct qmsg *m = q->all[i];
		if (ev_timer_armed(&m->retry)) {
			ev_timer_stop(srv->loop, &m->retry);
			retry_due(srv->loop, m);
			flushed++;
		}
	}
	log_info("queue rescan: %d new, %d deferred messages retried now", added, flushed);
}

int queue_active(const struct queue *q)
{
	return q->active;
}

int queue_size(const struct queue *q)
{
	return q->nmsgs;
}

void queue_free(struct queue **qp)
{
	struct queue *q = *qp;
	if (!q)
		return;
	while (q->nall)
		forget(q, q->all[q->nall - 1]);
	free(q->all);
	free(q);
	*qp = NULL;
}
