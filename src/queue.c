/*
 * queue.c - the delivery scheduler (see queue.h).
 *
 * Every message held is in one of three places: a run list (due now),
 * an attempt (in flight), or the event loop's timer heap (deferred, armed
 * for the earliest next try of its pending recipients).  A deferred
 * message costs its struct and a heap entry and no CPU while it waits;
 * the work per second follows the messages that come due.
 *
 * Two run lists, so that neither kind of transport waits behind the
 * other: messages with a recipient for a blocking transport (deliver(),
 * maildir) go to a worker thread, at most 2 x delivery_workers at once;
 * messages whose due recipients are all for asynchronous transports
 * (start(), API 1.2: smtp) are handed to the transport on the loop, at
 * most ASYNC_MAX messages at once.  The transport queues per destination
 * and limits its own connections (destination and total concurrency);
 * the bound here only keeps what is handed over, and the queue files held
 * open for it, in proportion: the rest waits in the run list, which costs
 * a pointer per message.
 *
 * One attempt of a message takes its due pending recipients: those of
 * blocking transports as one worker job, those of each (asynchronous
 * transport, next hop) as one start().  Each result is recorded when it
 * is known: the status byte in the queue file (no sync: after a crash a
 * recipient may be delivered again, never lost; one recorded as
 * delivered never is) and a log line in Postfix's form.  When the last
 * part of the attempt ends (finish): deferred recipients get their next
 * try (backoff doubling from retry_initial to retry_max, times a random
 * factor in [0.75, 1.25): an outage's backlog does not come due at one
 * instant), written to the seal line with the attempt count, so a restart
 * resumes the schedule; a message past queue_lifetime bounces what is
 * pending; the reports due (failure, delay, success: RFC 3464) go out as
 * one message; and the file goes when nothing is pending.
 *
 * Crash-loop guard (spool.h, "Delivery attempts"): each attempt, blocking
 * or asynchronous, is marked in the queue file from when it opens the
 * file until finish() (before the file can be retired and its slot
 * reused).  A message recovery found in flight at a crash (m->suspect) is
 * tried alone: it waits until nothing else is being delivered, and
 * nothing else starts until it is done, so that a crash then is its own
 * and recovery can hold it.
 */
#include "queue.h"
#include "bounce.h"
#include "delivery.h"
#include "log.h"
#include "mem.h"
#include "module_load.h"
#include "routes.h"
#include "server.h"
#include "generation.h"
#include "smtp_parse.h"
#include "spool.h"
#include "stats.h"
#include "worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define ASYNC_MAX 5000          /* messages in asynchronous attempts at once */

enum { RUN_SYNC = 0, RUN_ASYNC = 1 };

struct run_list {
	struct qmsg *head, *tail;
};

struct queue {
	struct server *srv;
	struct run_list run[2];
	int active_sync;        /* worker jobs in flight */
	int active_async;       /* messages with asynchronous deliveries in flight */
	int ndeliveries;        /* asynchronous deliveries in flight */
	int in_start;           /* inside a transport's start(): no new attempts */
	int nmsgs;
	struct qmsg **all;      /* every message held, for shutdown */
	int nall, capall;
	unsigned rnd;           /* jitter */
	bool solo_running;      /* a suspect's attempt, alone: start nothing else */
};

struct job {
	struct qmsg *m;
	struct petrel_delivery **dl;    /* one per recipient, for blocking transports */
	int n;
};

static double now_f(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static struct module *transport_of(struct server *srv, const char *name)
{
	struct module *mod = module_find(&srv->gen->mods, name);
	return mod && mod->desc->transport ? mod : NULL;
}

static bool is_async(const struct module *mod)
{
	return mod && module_has_transport_api(mod, 2) && mod->desc->transport->start;
}

/* --- results --- */

/* "250 2.0.0 Ok" -> "2.0.0"; else the class of the result. */
static void dsn_code(const char *text, int result, char out[16])
{
	const char *p = text;
	if (p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
	    (p[3] == ' ' || p[3] == '-'))
		p += 4;
	int a, b, c, n = 0;
	if (sscanf(p, "%1d.%3d.%3d%n", &a, &b, &c, &n) == 3 && n > 0 && (p[n] == ' ' || !p[n]) &&
	    a >= 2 && a <= 5) {
		snprintf(out, 16, "%d.%d.%d", a, b, c);
		return;
	}
	snprintf(out, 16, "%s", result == PETREL_DEFER ? "4.0.0" : result == PETREL_BOUNCE ? "5.0.0"
	                                                                               : "2.0.0");
}

void delivery_apply(struct petrel_delivery *dl, int i, int r, const char *text)
{
	struct qmsg *m = dl->m;
	struct qdest *d = &m->dests[dl->idx[i]];
	dl->result[i] = (signed char)r;
	if (!text || !*text)
		text = r == PETREL_DEFER ? "deferred" : r == PETREL_BOUNCE ? "bounced" : "delivered";
	if (r != PETREL_DEFER) {
		char st = r == PETREL_BOUNCE ? Q_BOUNCED : Q_DELIVERED;
		if (pwrite(dl->fd, &st, 1, d->status_off) != 1)
			log_error("%s: cannot record delivery status: %m", m->qid);
		d->status = st;
		/* a next hop with DSN took NOTIFY along: it reports success
		 * itself; a final delivery (synchronous, or said so) is ours */
		if ((d->notify & PETREL_NOTIFY_SUCCESS) &&
		    (r == PETREL_RELAYED || r == PETREL_DELIVERED_FINAL || !dl->async) &&
		    r != PETREL_BOUNCE)
			d->success = r == PETREL_RELAYED ? 'r' : 'd';
	}
	free(d->last_error);
	d->last_error = xstrdup(text);
	free(d->relay);
	d->relay = dl->relay[0] ? xstrdup(dl->relay) : NULL;
	char orig[600] = "", code[16];
	if (strcmp(d->orig, d->address))
		snprintf(orig, sizeof orig, ", orig_to=<%s>", d->orig);
	dsn_code(text, r, code);
	double now = now_f(), b = dl->start - m->arrival_precise;
	stats_outcome(stats_transport_slot(d->transport), r == PETREL_DEFER ? STATS_DEFERRED
	              : r == PETREL_BOUNCE ? STATS_BOUNCED : STATS_DELIVERED, m->size,
	              now - m->arrival_precise);
	log_info("%s: to=<%s>%s, relay=%s, delay=%.2f, delays=0/%.2f/0/%.2f, dsn=%s, status=%s (%s)",
	         m->qid, d->address, orig, dl->relay[0] ? dl->relay : d->transport,
	         now - m->arrival_precise, b > 0 ? b : 0, now - dl->start, code,
	         r == PETREL_DEFER ? "deferred" : r == PETREL_BOUNCE ? "bounced" : "sent", text);
}

static struct petrel_delivery *delivery_new(struct qmsg *m, int n)
{
	struct petrel_delivery *dl = xcalloc(1, sizeof *dl);
	dl->gen = gen_ref(m->srv->gen);     /* its module and route stay */
	dl->m = m;
	dl->fd = m->fd;
	dl->pos = m->msg_off;
	dl->idx = xcalloc((size_t)n, sizeof *dl->idx);
	dl->result = xmalloc((size_t)n);
	memset(dl->result, DLV_NO_RESULT, (size_t)n);
	dl->start = m->attempt_start;
	return dl;
}

static void delivery_free(struct petrel_delivery **dlp)
{
	struct petrel_delivery *dl = *dlp;
	for (int i = 0; dl->orcpt && i < dl->n; i++)
		free(dl->orcpt[i]);
	free(dl->orcpt);
	free(dl->envid);
	free(dl->idx);
	free(dl->result);
	gen_unref(&dl->gen);
	free(dl);
	*dlp = NULL;
}

/* --- worker side: blocking transports --- */

static void deliver_work(void *arg)
{
	struct job *j = arg;
	for (int k = 0; k < j->n; k++) {
		struct petrel_delivery *dl = j->dl[k];
		int r = dl->mod->desc->transport->deliver(dl->mod->state, dl);
		if (dl->result[0] != DLV_NO_RESULT)       /* 1.2: delivery_rcpt_result said */
			r = dl->result[0];
		delivery_apply(dl, 0, delivery_result_known(r), dl->status);
	}
}

/* --- loop side --- */

static void kick(struct queue *q);
static void finish(struct queue *q, struct qmsg *m);

static void forget(struct queue *q, struct qmsg *m)
{
	int i = m->qindex;
	q->all[i] = q->all[--q->nall];
	q->all[i]->qindex = i;
	q->nmsgs--;
	ev_timer_stop(q->srv->loop, &m->retry);
	if (m->fd >= 0)
		close(m->fd);
	qmsg_free(&m);
}

/* Which run list: a worker is needed when a due recipient has a
 * blocking transport. */
static int run_kind(struct server *srv, struct qmsg *m)
{
	time_t now = time(NULL);
	for (int i = 0; i < m->ndests; i++) {
		struct qdest *d = &m->dests[i];
		if (d->status != Q_PENDING || d->next_try > now)
			continue;
		struct module *mod = transport_of(srv, d->transport);
		if (mod && !is_async(mod))
			return RUN_SYNC;
	}
	return RUN_ASYNC;
}

static void run_push(struct queue *q, struct qmsg *m)
{
	if (m->on_run)
		return;
	struct run_list *l = &q->run[run_kind(q->srv, m)];
	m->next = NULL;
	m->on_run = true;
	if (l->tail)
		l->tail->next = m;
	else
		l->head = m;
	l->tail = m;
}

static void retry_due(struct ev_loop *loop, void *arg)
{
	(void)loop;
	struct qmsg *m = arg;
	struct queue *q = m->srv->queue;
	run_push(q, m);
	kick(q);
}

static unsigned rand_next(struct queue *q)
{
	q->rnd = q->rnd * 1103515245u + 12345u;
	return q->rnd >> 8;
}

/* Seconds to wait after the n-th deferral of a recipient. */
static time_t backoff(struct queue *q, int n)
{
	struct config *cfg = q->srv->cfg;
	double delay = cfg->retry_initial;
	for (int i = 1; i < n && delay < cfg->retry_max; i++)
		delay *= 2;
	if (delay > cfg->retry_max)
		delay = cfg->retry_max;
	delay *= 0.75 + (double)(rand_next(q) % 1000) / 2000.0;
	return delay < 1 ? 1 : (time_t)(delay + 0.5);
}

/* Arm m's timer for its earliest pending recipient (and its lifetime). */
static void arm(struct queue *q, struct qmsg *m)
{
	struct config *cfg = q->srv->cfg;
	time_t now = time(NULL), when = 0;
	for (int i = 0; i < m->ndests; i++)
		if (m->dests[i].status == Q_PENDING && (!when || m->dests[i].next_try < when))
			when = m->dests[i].next_try;
	time_t expiry = m->arrival + cfg->queue_lifetime;
	if (when > expiry)
		when = expiry;
	if (cfg->delay_warning_time && !m->delay_warned && m->sender[0] &&
	    m->arrival + cfg->delay_warning_time < when)
		when = m->arrival + cfg->delay_warning_time;
	m->retry.cb = retry_due;
	if (q->srv->stopping)
		return;
	if (when <= now) {
		run_push(q, m);
		return;
	}
	ev_timer_start(q->srv->loop, &m->retry, (uint64_t)(when - now) * 1000);
}

/* The reports due for m, as one message; false when it could not be
 * written (the file must stay).  retire: m is done, its file goes once
 * the report is durable. */
static bool report(struct queue *q, struct qmsg *m, bool retire, bool warn)
{
	struct server *srv = q->srv;
	struct buf content = {0};
	bool due = qmsg_bounce_due(m) || warn;
	bool full = false;
	if (due && m->fd >= 0) {
		bool failed = false;
		for (int i = 0; i < m->ndests; i++)
			failed |= m->dests[i].status == Q_BOUNCED && !m->dests[i].reported;
		full = failed && (m->flags & QMSG_RET_FULL) && m->size <= srv->cfg->message_size_limit;
		int r = full ? bounce_capture_message(m->fd, m, &content)
		             : bounce_capture_headers(m->fd, m, &content);
		if (r < 0) {
			const char *why = errno ? strerror(errno) : "the file ends before the message";
			/* a cut message is no message/rfc822: its header section
			 * alone, when that was read whole */
			size_t end = full ? bounce_header_end(content.data, content.len) : SIZE_MAX;
			if (end != SIZE_MAX) {
				content.len = end;
				content.data[end] = 0;
				full = false;
			}
			log_warn("%s: queue file read error (%s): the report returns %s", m->qid, why,
			         end != SIZE_MAX ? "the message's header section only"
			                         : "what could be read of the message");
		}
	}
	bool ok = bounce_send(srv, m, &content, retire, warn, full);
	buf_free(&content);
	return ok;
}

/* The report could not be written: m stays, and what it owed is
 * reported on the next attempt. */
static void report_later(struct queue *q, struct qmsg *m)
{
	for (int i = 0; i < m->ndests; i++)
		if (m->dests[i].status == Q_BOUNCED)
			m->dests[i].reported = false;
	time_t next = time(NULL) + backoff(q, ++m->attempts);
	for (int i = 0; i < m->ndests; i++)
		if (m->dests[i].status == Q_PENDING && m->dests[i].next_try < next)
			m->dests[i].next_try = next;
	if (!m->srv->stopping)
		ev_timer_start(m->srv->loop, &m->retry, (uint64_t)(next - time(NULL)) * 1000);
}

static void expire(struct qmsg *m)
{
	for (int i = 0; i < m->ndests; i++) {
		struct qdest *d = &m->dests[i];
		if (d->status != Q_PENDING)
			continue;
		d->status = Q_BOUNCED;
		d->expired = true;
		stats_outcome(stats_transport_slot(d->transport), STATS_BOUNCED, 0,
		              difftime(time(NULL), m->arrival));
		if (m->fd >= 0 && pwrite(m->fd, "B", 1, d->status_off) != 1)
			log_error("%s: cannot record bounce: %m", m->qid);
		log_info("%s: to=<%s>, relay=%s, delay=%.0f, dsn=4.4.7, status=bounced "
		         "(message expired after %d attempts: %s)", m->qid, d->address,
		         d->relay ? d->relay : d->transport, difftime(time(NULL), m->arrival),
		         m->attempts, d->last_error ? d->last_error : "deferred");
	}
}

/* The last part of m's attempt ended (see the file's comment). */
static void finish(struct queue *q, struct qmsg *m)
{
	struct server *srv = q->srv;
	struct config *cfg = srv->cfg;
	time_t now = time(NULL);
	int pending = 0;
	if (m->async_counted) {
		q->active_async--;
		m->async_counted = false;
	}
	/* before the slot can be retired and reused */
	if (m->fd >= 0 && spool_attempt_mark(m->fd, SPOOL_ATTEMPT_NONE) < 0)
		log_error("%s: cannot clear the delivery attempt mark: %m", m->qid);
	if (m->solo) {
		q->solo_running = false;
		m->solo = false;
		m->suspect = false;     /* it did not crash alone: a message like others */
	}
	for (int i = 0; i < m->ndests; i++) {
		struct qdest *d = &m->dests[i];
		if (d->busy && d->status == Q_PENDING) {
			d->attempts++;
			d->next_try = now + backoff(q, d->attempts);
		}
		d->busy = false;
		pending += d->status == Q_PENDING;
	}
	bool warn = false;
	if (pending) {
		m->attempts++;
		if (now - m->arrival >= cfg->queue_lifetime) {
			expire(m);
			pending = 0;
		} else if (cfg->delay_warning_time && !m->delay_warned && m->sender[0] &&
		           now - m->arrival >= cfg->delay_warning_time) {
			m->delay_warned = true;
			warn = true;
		}
	}
	if (!pending) {
		bool ok = report(q, m, true, false);    /* removes the file, after its report */
		if (ok) {
			forget(q, m);
			return;
		}
		report_later(q, m);
	} else {
		if (!report(q, m, false, warn))
			report_later(q, m);
		else
			arm(q, m);
		time_t first = 0;
		for (int i = 0; i < m->ndests; i++)
			if (m->dests[i].status == Q_PENDING && (!first || m->dests[i].next_try < first))
				first = m->dests[i].next_try;
		if (m->fd >= 0 && spool_write_retry(m->fd, m->attempts, first, m->delay_warned) < 0)
			log_error("%s: cannot record the retry time: %m", m->qid);
		if (m->fd >= 0 && spool_write_notes(m->fd, m) < 0)
			log_warn("%s: cannot record the last errors: %m", m->qid);
	}
	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
}

/* One part of m's attempt ended. */
static void part_done(struct queue *q, struct qmsg *m)
{
	if (--m->inflight == 0)
		finish(q, m);
}

static void deliver_done(void *arg)
{
	struct job *j = arg;
	struct qmsg *m = j->m;
	struct queue *q = m->srv->queue;
	for (int k = 0; k < j->n; k++)
		delivery_free(&j->dl[k]);
	free(j->dl);
	free(j);
	q->active_sync--;
	part_done(q, m);
	kick(q);
}

void delivery_finished(struct petrel_delivery *dl)
{
	struct qmsg *m = dl->m;
	struct queue *q = m->srv->queue;
	for (int i = 0; i < dl->n; i++)
		if (dl->result[i] == DLV_NO_RESULT)
			delivery_apply(dl, i, PETREL_DEFER,
			               dl->status[0] ? dl->status : "delivery ended without a result");
	delivery_free(&dl);
	q->ndeliveries--;
	part_done(q, m);
	kick(q);
}

/* Start m's due recipients of asynchronous transports whose group begins
 * at index first: every due recipient with the same transport, next hop,
 * route (and, by MX, domain). */
static void start_group(struct queue *q, struct qmsg *m, int first, struct module *mod,
                        bool *taken)
{
	struct server *srv = q->srv;
	const char *nexthop;
	const struct route *rt = config_route_for(srv->cfg, m->dests[first].domain, &nexthop);
	int n = 0;
	int *idx = xcalloc((size_t)m->ndests, sizeof *idx);
	for (int i = first; i < m->ndests; i++) {
		struct qdest *d = &m->dests[i];
		if (taken[i] || !d->busy || strcmp(d->transport, m->dests[first].transport))
			continue;
		const char *nh;
		const struct route *r = config_route_for(srv->cfg, d->domain, &nh);
		if (r != rt || strcmp(nh, nexthop) || (!*nexthop && strcmp(d->domain, m->dests[first].domain)))
			continue;
		taken[i] = true;
		idx[n++] = i;
	}
	struct petrel_delivery *dl = delivery_new(m, n);
	memcpy(dl->idx, idx, (size_t)n * sizeof *idx);
	free(idx);
	dl->n = n;
	dl->d = &m->dests[first];
	dl->mod = mod;
	dl->async = true;
	dl->nexthop = nexthop;
	dl->route = rt;
	m->inflight++;
	q->ndeliveries++;
	q->in_start++;
	int r = mod->desc->transport->start(mod->state, dl);
	q->in_start--;
	if (r < 0) {            /* nothing started: every recipient is deferred */
		for (int i = 0; i < dl->n; i++)
			if (dl->result[i] == DLV_NO_RESULT)
				delivery_apply(dl, i, PETREL_DEFER,
				               dl->status[0] ? dl->status : "the transport could not start");
		delivery_free(&dl);
		q->ndeliveries--;
		m->inflight--;
	}
}

/* One attempt of m: its due pending recipients. */
static void attempt(struct queue *q, struct qmsg *m)
{
	struct server *srv = q->srv;
	time_t now = time(NULL);
	char path[4096];
	m->fd = spool_path(srv->spool, m, path, sizeof path) == 0 ? open(path, O_RDWR | O_CLOEXEC) : -1;
	if (m->fd < 0) {
		log_error("%s: cannot open queue file: %m", m->qid);
		m->inflight = 1;
		for (int i = 0; i < m->ndests; i++)
			m->dests[i].busy = m->dests[i].status == Q_PENDING && m->dests[i].next_try <= now;
		part_done(q, m);
		return;
	}
	m->solo = m->suspect;
	if (m->solo)
		q->solo_running = true;
	if (spool_attempt_mark(m->fd, m->solo ? SPOOL_ATTEMPT_SOLO : SPOOL_ATTEMPT_SHARED) < 0)
		log_error("%s: cannot mark the delivery attempt: %m", m->qid);
	m->attempt_start = now_f();
	m->inflight = 1;        /* held until every part is started */
	int nsync = 0, nasync = 0;
	for (int i = 0; i < m->ndests; i++) {
		struct qdest *d = &m->dests[i];
		d->busy = d->status == Q_PENDING && d->next_try <= now;
		if (!d->busy)
			continue;
		struct module *mod = transport_of(srv, d->transport);
		if (is_async(mod)) {
			nasync++;
		} else if (mod) {
			nsync++;
		} else {
			struct petrel_delivery *dl = delivery_new(m, 1);
			dl->n = 1;
			dl->idx[0] = i;
			delivery_apply(dl, 0, PETREL_DEFER, "");
			snprintf(dl->status, sizeof dl->status, "transport %s is not loaded", d->transport);
			free(d->last_error);
			d->last_error = xstrdup(dl->status);
			log_warn("%s: to=<%s>: transport %s is not loaded", m->qid, d->address, d->transport);
			delivery_free(&dl);
		}
	}
	if (nsync) {
		struct job *j = xcalloc(1, sizeof *j);
		j->m = m;
		j->dl = xcalloc((size_t)nsync, sizeof *j->dl);
		for (int i = 0; i < m->ndests; i++) {
			struct qdest *d = &m->dests[i];
			struct module *mod = d->busy ? transport_of(srv, d->transport) : NULL;
			if (!mod || is_async(mod))
				continue;
			struct petrel_delivery *dl = delivery_new(m, 1);
			dl->n = 1;
			dl->idx[0] = i;
			dl->d = d;
			dl->mod = mod;
			dl->nexthop = "";
			j->dl[j->n++] = dl;
		}
		m->inflight++;
		q->active_sync++;
		workers_submit(srv->workers, deliver_work, deliver_done, j);
	}
	if (nasync) {
		bool *taken = xcalloc((size_t)m->ndests, sizeof *taken);
		for (int i = 0; i < m->ndests; i++) {
			struct qdest *d = &m->dests[i];
			struct module *mod = d->busy && !taken[i] ? transport_of(srv, d->transport) : NULL;
			if (is_async(mod))
				start_group(q, m, i, mod, taken);
		}
		free(taken);
		q->active_async++;          /* until finish(): one message, however many groups */
		m->async_counted = true;
	}
	part_done(q, m);
}

static void kick(struct queue *q)
{
	struct server *srv = q->srv;
	int max_sync = srv->cfg->delivery_workers * 2;
	if (q->in_start)
		return;         /* a transport's start() is running: after it */
	for (;;) {
		if (srv->stopping)
			return;
		struct run_list *l = NULL;
		if (q->run[RUN_SYNC].head && q->active_sync < max_sync)
			l = &q->run[RUN_SYNC];
		else if (q->run[RUN_ASYNC].head && q->active_async < ASYNC_MAX)
			l = &q->run[RUN_ASYNC];
		if (!l || q->solo_running)
			return;
		struct qmsg *m = l->head;
		if (m->suspect && (q->active_sync || q->active_async || q->ndeliveries))
			return;         /* it runs alone: let the others finish */
		l->head = m->next;
		if (!l->head)
			l->tail = NULL;
		m->next = NULL;
		m->on_run = false;
		attempt(q, m);
	}
}

struct queue *queue_new(struct server *srv)
{
	struct queue *q = xcalloc(1, sizeof *q);
	q->srv = srv;
	q->rnd = (unsigned)getpid() ^ (unsigned)time(NULL);
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
	ev_timer_init(&m->retry, retry_due, m);
	arm(q, m);          /* new: due now; recovered: when its seal says */
	kick(q);
}

int queue_check_dests(struct server *srv, struct qmsg *m, int first, unsigned notify,
                      const char *orcpt, char *reply, size_t size)
{
	reply[0] = 0;
	for (int i = first; i < m->ndests; i++) {
		struct qdest *d = &m->dests[i];
		d->notify = (unsigned char)notify;
		free(d->orcpt);
		d->orcpt = orcpt ? xstrdup(orcpt) : NULL;
		struct module *mod = transport_of(srv, d->transport);
		if (!mod || !module_has_transport_api(mod, 2) || !mod->desc->transport->check)
			continue;
		char r[512] = "";
		int v = mod->desc->transport->check(mod->state, d->address, d->local, d->domain, r,
		                                    sizeof r);
		if (v == PETREL_CHECK_OK)
			continue;
		r[sizeof r - 1] = 0;
		bool refuse = v == PETREL_CHECK_REFUSE;
		/* a reply of the right class, else the default */
		if (r[0] == (refuse ? '5' : '4') && strlen(r) > 4 && !strpbrk(r, "\r\n"))
			snprintf(reply, size, "%s", r);
		else if (refuse)
			snprintf(reply, size, "550 5.1.1 <%s>: Recipient address rejected", d->address);
		else
			snprintf(reply, size, "450 4.2.0 <%s>: Recipient address rejected: try again later",
			         d->address);
		return refuse ? PETREL_ROUTE_UNKNOWN : PETREL_ROUTE_TEMPFAIL;
	}
	return PETREL_ROUTE_OK;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read queue/<name>, a file released from hold/, for queue_add. */
static struct qmsg *take_in(int dfd, const char *name)
{
	const char *why = "cannot open";
	int fd = strlen(name) < QID_MAX ? openat(dfd, name, O_RDONLY | O_CLOEXEC) : -1;
	struct qmsg *m = fd >= 0 ? spool_read_envelope(fd, name, &why) : NULL;
	if (fd >= 0)
		close(fd);
	if (!m) {
		log_warn("%s: not taken into the queue: %s", name, why);
		return NULL;
	}
	m->slot = -1;
	m->suspect = m->crashes > 0;   /* it crashed the daemon before: alone */
	log_info("%s: released into the queue", name);
	return m;
}

void queue_transports_flush(struct queue *q)
{
	struct server *srv = q->srv;
	for (struct generation *g = srv->live_gens; g; g = g->next_live)
		for (int i = 0; i < g->mods.n; i++) {
			struct module *mod = g->mods.v[i];
			if (module_has_transport_api(mod, 3) && mod->desc->transport->flush && !mod->stopped)
				mod->desc->transport->flush(mod->state);
		}
}

void queue_rescan(struct queue *q)
{
	queue_transports_flush(q);
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
	struct qmsg **fresh = NULL;
	int nfresh = 0;
	while (d && (de = readdir(d))) {
		char *name = de->d_name;
		int slot;
		/* slots are the daemon's own; operators release files named by id */
		if (name[0] == '.' || spool_slot_name(name, &slot) ||
		    bsearch(&name, known, (size_t)nknown, sizeof *known, cmp_str))
			continue;
		struct qmsg *m = take_in(dirfd(d), name);
		if (!m)
			continue;
		fresh = xrealloc(fresh, (size_t)(nfresh + 1) * sizeof *fresh);
		fresh[nfresh++] = m;
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
			for (int k = 0; k < m->ndests; k++)
				m->dests[k].next_try = 0;
			run_push(q, m);
			flushed++;
		}
	}
	for (int i = 0; i < nfresh; i++) {
		for (int k = 0; k < fresh[i]->ndests; k++)
			fresh[i]->dests[k].next_try = 0;
		queue_add(q, fresh[i]);
	}
	free(fresh);
	kick(q);
	log_info("queue rescan: %d new, %d deferred messages retried now", added, flushed);
}

void queue_stop(struct queue *q)
{
	struct server *srv = q->srv;
	/* older generations' instances too: their deliveries may be in flight */
	for (struct generation *g = srv->live_gens; g; g = g->next_live)
		for (int i = 0; i < g->mods.n; i++) {
			struct module *mod = g->mods.v[i];
			if (is_async(mod) && mod->desc->transport->stop && !mod->stopped) {
				mod->stopped = true;
				mod->desc->transport->stop(mod->state);
			}
		}
}

int queue_active(const struct queue *q)
{
	return q->active_sync + q->ndeliveries;
}

void queue_gauges(const struct queue *q, int64_t *active, int64_t *deferred, time_t *oldest)
{
	*active = *deferred = 0;
	*oldest = 0;
	for (int i = 0; i < q->nall; i++) {
		const struct qmsg *m = q->all[i];
		if (m->inflight || m->on_run)
			++*active;
		else
			++*deferred;
		if (!*oldest || m->arrival < *oldest)
			*oldest = m->arrival;
	}
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

/* --- operator actions (control.c; see queue.h) --- */

struct qmsg *queue_find(const struct queue *q, const char *qid)
{
	for (int i = 0; i < q->nall; i++)
		if (!strcmp(q->all[i]->qid, qid))
			return q->all[i];
	return NULL;
}

int queue_count(const struct queue *q)
{
	return q->nall;
}

struct qmsg *queue_at(const struct queue *q, int i)
{
	return q->all[i];
}

bool qmsg_busy(const struct qmsg *m)
{
	return m->fd >= 0 || m->inflight > 0;
}

/* Take m off its run list (an operator's action: linear is fine). */
static void run_remove(struct queue *q, struct qmsg *m)
{
	if (!m->on_run)
		return;
	for (int k = 0; k < 2; k++) {
		struct run_list *l = &q->run[k];
		struct qmsg *prev = NULL;
		for (struct qmsg *x = l->head; x; prev = x, x = x->next) {
			if (x != m)
				continue;
			if (prev)
				prev->next = m->next;
			else
				l->head = m->next;
			if (l->tail == m)
				l->tail = prev;
			m->next = NULL;
			m->on_run = false;
			return;
		}
	}
}

int queue_hold_msg(struct queue *q, struct qmsg *m, const char **err)
{
	if (qmsg_busy(m)) {
		*err = "a delivery attempt is in flight; try again when it ends";
		return -1;
	}
	if (spool_hold(q->srv->spool, m, err) < 0)
		return -1;
	log_info("%s: hold: by the operator (petrelctl hold)", m->qid);
	run_remove(q, m);
	forget(q, m);
	return 0;
}

int queue_delete_msg(struct queue *q, struct qmsg *m, const char **err)
{
	struct server *srv = q->srv;
	if (qmsg_busy(m)) {
		*err = "a delivery attempt is in flight; try again when it ends";
		return -1;
	}
	char path[4096];
	int fd = spool_path(srv->spool, m, path, sizeof path) == 0 ? open(path, O_RDWR | O_CLOEXEC) : -1;
	if (fd < 0 || spool_retire(srv->spool, m, fd) < 0) {
		*err = strerror(errno);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* durable: a slot marked free, or a file unlinked, survives a power cut */
	if (fdatasync(fd) < 0 || spool_sync_queue_dir(srv->spool) < 0)
		log_error("%s: deleted, but the sync failed: %m", m->qid);
	close(fd);
	log_info("%s: removed by the operator (petrelctl delete), no report sent", m->qid);
	run_remove(q, m);
	forget(q, m);
	return 0;
}

int queue_take_released(struct queue *q, const char *qid, const char **err)
{
	struct server *srv = q->srv;
	char *dir = xasprintf("%s/queue", spool_dir(srv->spool));
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	struct qmsg *m = dfd >= 0 ? take_in(dfd, qid) : NULL;
	if (dfd >= 0)
		close(dfd);
	if (!m) {
		*err = "it could not be read (see the log)";
		return -1;
	}
	for (int k = 0; k < m->ndests; k++)
		m->dests[k].next_try = 0;
	queue_add(q, m);
	return 0;
}

void queue_flush_msg(struct queue *q, struct qmsg *m)
{
	if (qmsg_busy(m) || m->on_run)
		return;         /* being tried, or about to be */
	ev_timer_stop(q->srv->loop, &m->retry);
	for (int k = 0; k < m->ndests; k++)
		m->dests[k].next_try = 0;
	log_info("%s: flush: retried now (petrelctl flush)", m->qid);
	run_push(q, m);
	kick(q);
}

void queue_requeue(struct queue *q)
{
	for (int i = 0; i < q->nall; i++)
		for (int k = 0; k < q->all[i]->ndests; k++)
			q->all[i]->dests[k].attempts = 0;
	queue_rescan(q);
}
