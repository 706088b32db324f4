/*
 * smtp_dest.c - per-destination queues and connection scheduling.
 *
 * A destination is a next hop: the recipient domain's MX set, or a
 * relay host (bracketed: no MX lookup), with the TLS policy and the
 * credentials of the route that chose it (part of the key, so two routes
 * with different policies never share a connection).  Each destination
 * keeps its queued jobs (FIFO) and its connections.
 *
 * Politeness, as Postfix's qmgr and KumoMTA's ready queues do it:
 *   - at most 'window' connections to a destination (it starts at
 *     INITIAL_WINDOW, grows by one for each session that comes up, up to
 *     destination_concurrency) and total_concurrency in all;
 *   - a new connection only when the queued jobs outnumber the
 *     connections, busy or being set up: each of those takes the next
 *     job when it is free, so a message that comes in while the one
 *     session is mid-transaction waits for it instead of opening another
 *     (3 queued messages never open 20; 100 arriving one by one reuse);
 *     when the window alone held a backlog back, the tick opens what
 *     the grown window allows, so a backlog that came due at once (a
 *     restart, a flush) is not held at the initial window;
 *   - a connection that reaches no target halves the window (negative
 *     feedback); when it was the destination's last connection the
 *     destination is dead for dead_time: its queued jobs and the jobs
 *     that come in meanwhile are deferred at once with the last reason,
 *     without each paying a connect timeout;
 *   - an idle connection is kept connection_reuse_time and takes the
 *     destination's next job (the client sends RSET after each message).
 *
 * The resolved targets are shared by the destination's connections and
 * refcounted: a new lookup never frees an array a connection still walks.
 * Empty destinations are freed by the tick, never from inside a callback.
 */
#include "smtp_int.h"
#include "smtp_syntax.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#define INITIAL_WINDOW 5
#define RESOLVE_TTL_MS 60000

struct tset {
	int refs;
	int n;
	struct smtp_target *t;
};

struct dref {                         /* one connection of a destination */
	struct smtp_dest *dest;
	struct smtp_conn *c;
	struct tset *ts;
	int up;                           /* the session came up */
	struct dref *prev, *next;
};

struct smtp_dest {
	struct smtp *m;
	struct smtp_dest *hnext;          /* hash chain */
	char key[700];
	char name[300];                   /* domain or relay host */
	int mx, port;
	int is_unix;                      /* lmtp: name is a Unix socket's path */
	enum smtp_tls_policy tls;
	int implicit;
	char *auth_user, *auth_password;
	struct tset *ts;                  /* current targets, NULL until resolved */
	unsigned long long resolved_at;
	int resolving;
	unsigned long long dns_token;
	struct smtp_job *qhead, *qtail;
	int nqueued;
	struct dref *conns;
	int nconn, nsetup;                /* open / not yet up */
	int window;
	unsigned long long dead_until;
	char dead_reason[420];
	char dead_relay[340];             /* the server that failed, "" when none was reached */
	struct smtp_dest *snext;          /* m->starved */
	struct smtp_dest *pnext;          /* the tick's list of destinations to pump */
	int due;                          /* on that list */
	int window_full;                  /* the last pump stopped at the window */
	int starved;
};

static void pump(struct smtp_dest *dd);

static void tset_put(struct tset **pts)
{
	struct tset *ts = *pts;
	if (ts && --ts->refs == 0) {
		free(ts->t);
		free(ts);
	}
	*pts = NULL;
}

static size_t hash(const char *s, size_t size)
{
	unsigned long h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h & (size - 1);
}

static void table_grow(struct smtp *m)
{
	size_t size = m->dtab_size ? m->dtab_size * 2 : 256;
	struct smtp_dest **t = calloc(size, sizeof *t);
	if (!t)
		return;
	for (size_t i = 0; i < m->dtab_size; i++)
		for (struct smtp_dest *d = m->dtab[i], *n; d; d = n) {
			n = d->hnext;
			size_t k = hash(d->key, size);
			d->hnext = t[k];
			t[k] = d;
		}
	free(m->dtab);
	m->dtab = t;
	m->dtab_size = size;
}

static struct smtp_dest *lookup(struct smtp *m, const char *key)
{
	if (!m->dtab_size)
		return NULL;
	for (struct smtp_dest *d = m->dtab[hash(key, m->dtab_size)]; d; d = d->hnext)
		if (!strcmp(d->key, key))
			return d;
	return NULL;
}

static void dest_free(struct smtp_dest *dd)
{
	tset_put(&dd->ts);
	free(dd->auth_user);
	free(dd->auth_password);
	free(dd);
}

static void unstarve(struct smtp *m, struct smtp_dest *dd)
{
	if (!dd->starved)
		return;
	for (struct smtp_dest **p = &m->starved; *p; p = &(*p)->snext)
		if (*p == dd) {
			*p = dd->snext;
			break;
		}
	dd->starved = 0;
	dd->snext = NULL;
}

/* Every queued job gets result/reply and is done.  relay: the server the
 * reply came from ("name[ip]:port"), or NULL/"" when none was reached:
 * the log line says relay=none then, as Postfix's does. */
static void flush_queue(struct smtp_dest *dd, int result, const char *reply, const char *relay)
{
	struct smtp *m = dd->m;
	while (dd->qhead) {
		struct smtp_job *j = dd->qhead;
		dd->qhead = j->next;
		dd->nqueued--;
		m->host->delivery_relay(j->d, relay && *relay ? relay : "none");
		smtp_job_result_all(m, j, result, reply);
		smtp_job_finish(m, &j);
	}
	dd->qtail = NULL;
}

static void pump_starved(struct smtp *m)
{
	while (m->starved && m->nconn < m->total_concurrency && !m->stopping) {
		struct smtp_dest *dd = m->starved;
		unstarve(m, dd);
		pump(dd);
	}
}

static void dref_remove(struct dref *r)
{
	struct smtp_dest *dd = r->dest;
	if (r->prev)
		r->prev->next = r->next;
	else
		dd->conns = r->next;
	if (r->next)
		r->next->prev = r->prev;
	dd->nconn--;
	dd->m->nconn--;
	if (!r->up)
		dd->nsetup--;
	tset_put(&r->ts);
	free(r);
}

/* --- what connections tell us --- */

static struct smtp_job *want_job(struct smtp_conn *c, void *arg)
{
	struct dref *r = arg;
	struct smtp_dest *dd = r->dest;
	(void)c;
	if (!r->up) {
		r->up = 1;
		dd->nsetup--;
		if (dd->window < dd->m->dest_concurrency)
			dd->window++;
	}
	if (dd->m->stopping || !dd->qhead)
		return NULL;
	struct smtp_job *j = dd->qhead;
	dd->qhead = j->next;
	if (!dd->qhead)
		dd->qtail = NULL;
	dd->nqueued--;
	j->next = NULL;
	return j;
}

static void job_done(struct smtp_conn *c, struct smtp_job *j, void *arg)
{
	(void)c;
	(void)arg;
	smtp_job_finish(j->dest->m, &j);
}

static void conn_failed(struct smtp_conn *c, const char *reason, int loop, void *arg)
{
	struct dref *r = arg;
	struct smtp_dest *dd = r->dest;
	struct smtp *m = dd->m;
	const struct petrel_host *h = m->host;
	char at[340];
	snprintf(at, sizeof at, "%s", smtp_conn_failed_at(c));
	dref_remove(r);
	if (loop) {
		char why[500];
		snprintf(why, sizeof why, "550 5.4.6 mail for %s loops back to myself", dd->name);
		h->log(PETREL_LOG_WARN, "%s: %s (%s)", m->name, why + 10, reason);
		flush_queue(dd, PETREL_BOUNCE, why, NULL);
	} else {
		dd->window = dd->window > 1 ? dd->window / 2 : 1;
		if (dd->nconn == 0) {
			/* nobody is left who could reach it: park the destination,
			 * defer what waits and what comes meanwhile at once */
			if (m->dead_ms) {
				dd->dead_until = smtp_now() + m->dead_ms;
				snprintf(dd->dead_reason, sizeof dd->dead_reason, "%s", reason);
				snprintf(dd->dead_relay, sizeof dd->dead_relay, "%s", at);
				h->log(PETREL_LOG_INFO, "%s: destination %s is dead for %llu s: %s", m->name, dd->name,
				       m->dead_ms / 1000, reason + (strlen(reason) > 10 ? 10 : 0));
			}
			flush_queue(dd, PETREL_DEFER, reason, at);
		}
	}
	pump_starved(m);
	pump(dd);
}

static void conn_closed(struct smtp_conn *c, void *arg)
{
	struct dref *r = arg;
	struct smtp_dest *dd = r->dest;
	(void)c;
	dref_remove(r);
	pump_starved(dd->m);
	pump(dd);
}

static const struct smtp_conn_ops dest_conn_ops = {
	.want_job = want_job,
	.job_done = job_done,
	.failed = conn_failed,
	.closed = conn_closed,
};

/* --- scheduling --- */

static void resolved(void *arg, struct smtp_resolved *res)
{
	struct smtp_dest *dd = arg;
	struct smtp *m = dd->m;
	dd->resolving = 0;
	dd->dns_token = 0;
	if (res->status != PETREL_DELIVERED) {
		m->host->log(PETREL_LOG_INFO, "%s: %s: %s", m->name, dd->name, res->reason + 4);
		flush_queue(dd, res->status, res->reason, NULL);
		return;
	}
	struct tset *ts = calloc(1, sizeof *ts);
	if (!ts) {
		free(res->targets);
		flush_queue(dd, PETREL_DEFER, "451 4.3.0 out of memory", NULL);
		return;
	}
	ts->refs = 1;
	ts->n = res->ntargets;
	ts->t = res->targets;
	tset_put(&dd->ts);
	dd->ts = ts;
	dd->resolved_at = smtp_now();
	pump(dd);
}

/* An LMTP server on a Unix socket: its one target, no lookup. */
static void unix_target(struct smtp_dest *dd)
{
	struct smtp_resolved res = { .status = PETREL_DELIVERED, .ntargets = 1 };
	res.targets = calloc(1, sizeof *res.targets);
	if (!res.targets) {
		flush_queue(dd, PETREL_DEFER, "451 4.3.0 out of memory", NULL);
		return;
	}
	struct smtp_target *t = res.targets;
	struct sockaddr_un *sun = (struct sockaddr_un *)&t->sa;
	sun->sun_family = AF_UNIX;
	/* the path was checked shorter than SMTP_UNIX_PATH_MAX, which both hold */
	size_t n = strnlen(dd->name, sizeof sun->sun_path - 1);
	memcpy(sun->sun_path, dd->name, n);
	memcpy(t->name, dd->name, n);
	t->salen = (socklen_t)sizeof *sun;
	snprintf(t->ip, sizeof t->ip, "unix");
	resolved(dd, &res);
}

static int open_one(struct smtp_dest *dd)
{
	struct smtp *m = dd->m;
	struct dref *r = calloc(1, sizeof *r);
	if (!r)
		return -1;
	r->dest = dd;
	r->ts = dd->ts;
	r->ts->refs++;
	r->next = dd->conns;
	if (dd->conns)
		dd->conns->prev = r;
	dd->conns = r;
	dd->nconn++;
	dd->nsetup++;
	m->nconn++;
	struct smtp_conn_params p = {
		.targets = r->ts->t,
		.ntargets = r->ts->n,
		.tls = dd->tls,
		.implicit_tls = dd->implicit,
		.auth_user = dd->auth_user,
		.auth_password = dd->auth_password,
		.reuse_count = m->reuse_count,
	};
	r->c = smtp_conn_new(m, &p, &dest_conn_ops, r);
	if (!r->c) {
		dref_remove(r);
		return -1;
	}
	/* may fail at once (every target is this host): the callbacks have
	 * run then and r is gone */
	smtp_conn_go(r->c);
	return 0;
}

static void pump(struct smtp_dest *dd)
{
	struct smtp *m = dd->m;
	if (m->stopping || dd->resolving || !dd->qhead)
		return;
	unsigned long long now = smtp_now();
	if (dd->dead_until && now < dd->dead_until) {
		flush_queue(dd, PETREL_DEFER, dd->dead_reason, dd->dead_relay);
		return;
	}
	if (!dd->ts || (dd->nconn == 0 && now - dd->resolved_at > RESOLVE_TTL_MS)) {
		if (dd->nconn == 0 && dd->is_unix) {
			unix_target(dd);   /* calls resolved(), which pumps */
			return;
		}
		if (dd->nconn == 0) {
			dd->resolving = 1;
			dd->dns_token = smtp_dns_resolve(m->dns, dd->name, dd->mx, dd->port, resolved, dd);
			if (!dd->dns_token) {
				dd->resolving = 0;
				flush_queue(dd, PETREL_DEFER, "451 4.3.0 cannot start a DNS lookup", NULL);
			}
			return;
		}
	}
	/* idle connections first (giving a job may change the list: start over) */
	for (int again = 1; again && dd->qhead;) {
		again = 0;
		for (struct dref *r = dd->conns; r; r = r->next)
			if (r->up && smtp_conn_idle(r->c)) {
				smtp_conn_give(r->c, want_job(r->c, r));
				again = 1;
				break;
			}
	}
	if (m->stopping || dd->resolving || !dd->qhead)
		return;
	while (dd->qhead && dd->nqueued > dd->nconn && dd->nconn < dd->window && !m->stopping) {
		if (m->nconn >= m->total_concurrency) {
			if (!dd->starved) {
				dd->starved = 1;
				dd->snext = m->starved;
				m->starved = dd;
			}
			return;
		}
		if (open_one(dd) < 0)
			return;
		if (dd->dead_until && now < dd->dead_until)
			return;
	}
	/* held back by the window alone: the tick opens more once it grows */
	dd->window_full = dd->qhead && dd->nqueued > dd->nconn && dd->nconn >= dd->window;
}

/* --- start, tick, stop --- */

/* The route's "tls" (none, may, encrypt, verify) and "tls_mode"
 * ("implicit": TLS from the first byte, as on port 465).  Implicit TLS
 * is at least "encrypt"; "verify" from either side wins. */
static enum smtp_tls_policy tls_of(struct smtp *m, const char *v, const char *mode, int *implicit)
{
	enum smtp_tls_policy p = m->tls;
	*implicit = 0;
	if (!v || !*v)
		p = m->tls;
	else if (!strcmp(v, "none"))
		p = TLS_NONE;
	else if (!strcmp(v, "may"))
		p = TLS_MAY;
	else if (!strcmp(v, "encrypt") || !strcmp(v, "starttls"))
		p = m->tls == TLS_VERIFY ? TLS_VERIFY : TLS_ENCRYPT;
	else if (!strcmp(v, "verify"))
		p = TLS_VERIFY;
	else if (!strcmp(v, "implicit"))
		mode = "implicit";
	else
		m->host->log(PETREL_LOG_WARN, "%s: route option tls = \"%s\" is unknown; using the default", m->name, v);
	if (mode && !strcmp(mode, "implicit")) {
		*implicit = 1;
		if (p < TLS_ENCRYPT)
			p = m->tls == TLS_VERIFY ? TLS_VERIFY : TLS_ENCRYPT;
	} else if (mode && *mode && strcmp(mode, "starttls")) {
		m->host->log(PETREL_LOG_WARN, "%s: route option tls_mode = \"%s\" is unknown; ignored", m->name, mode);
	}
	return p;
}

int smtp_dest_start(struct smtp *m, petrel_delivery *d, char *err, size_t errsize)
{
	const struct petrel_host *h = m->host;
	int n = h->delivery_rcpt_count(d);
	if (n <= 0) {
		snprintf(err, errsize, "451 4.3.0 no recipient");
		return -1;
	}
	const char *nh = h->delivery_nexthop(d);
	char name[300];
	int mx = 1, port = m->port, is_unix = 0;
	if (m->lmtp) {
		/* LMTP goes to a named server, never by MX (RFC 2033 4) */
		if (!nh || !*nh)
			nh = m->nexthop;
		if (!nh || !*nh) {
			snprintf(err, errsize, "451 4.3.5 no LMTP server: set modules.lmtp.nexthop or the "
			         "route's nexthop");
			return -1;
		}
		if (smtp_parse_lmtp_nexthop(nh, name, sizeof name, &port, &is_unix) < 0) {
			snprintf(err, errsize, "451 4.3.5 bad LMTP next hop '%s'", nh);
			return -1;
		}
		mx = 0;
	} else if (nh && *nh) {
		if (smtp_parse_nexthop(nh, name, sizeof name, &mx, &port) < 0) {
			snprintf(err, errsize, "451 4.3.5 bad next hop '%s'", nh);
			return -1;
		}
	} else {
		const char *a = h->delivery_rcpt(d, 0), *at = strrchr(a, '@');
		if (!at || !at[1] || strlen(at + 1) >= sizeof name) {
			snprintf(err, errsize, "550 5.1.3 no domain in <%s>", a);
			return -1;
		}
		size_t i;
		for (i = 0; at[1 + i]; i++)
			name[i] = (char)tolower((unsigned char)at[1 + i]);
		name[i] = 0;
		if (name[0] == '[') {       /* a domain literal: user@[192.0.2.1] */
			size_t l = strlen(name);
			if (l < 3 || name[l - 1] != ']') {
				snprintf(err, errsize, "550 5.1.3 bad domain literal in <%s>", a);
				return -1;
			}
			memmove(name, name + 1, l - 2);
			name[l - 2] = 0;
			if (!strncasecmp(name, "ipv6:", 5))
				memmove(name, name + 5, strlen(name + 5) + 1);
			mx = 0;
		}
	}
	int implicit;
	enum smtp_tls_policy tls = tls_of(m, h->delivery_route_option(d, "tls"),
	                                   h->delivery_route_option(d, "tls_mode"), &implicit);
	const char *au = h->delivery_route_option(d, "auth_user");
	const char *ap = h->delivery_route_option(d, "auth_password");
	if (!au || !ap)
		au = ap = NULL;
	char key[700];
	snprintf(key, sizeof key, "%s|%d|%s|%d|%d|%s", mx ? "mx" : is_unix ? "unix" : "host", port, name,
	         (int)tls, implicit, au ? au : "");
	struct smtp_dest *dd = lookup(m, key);
	if (dd && dd->dead_until && smtp_now() < dd->dead_until) {
		snprintf(err, errsize, "%s", dd->dead_reason);
		h->delivery_relay(d, dd->dead_relay[0] ? dd->dead_relay : "none");
		return -1;
	}
	struct smtp_job *j = calloc(1, sizeof *j);
	unsigned char *flags = calloc((size_t)n, 2);
	if (!j || !flags) {
		free(j);
		free(flags);
		snprintf(err, errsize, "451 4.3.0 out of memory");
		return -1;
	}
	if (!dd) {
		dd = calloc(1, sizeof *dd);
		if (!dd) {
			free(j);
			free(flags);
			snprintf(err, errsize, "451 4.3.0 out of memory");
			return -1;
		}
		dd->m = m;
		snprintf(dd->key, sizeof dd->key, "%s", key);
		snprintf(dd->name, sizeof dd->name, "%s", name);
		dd->mx = mx;
		dd->is_unix = is_unix;
		dd->port = port;
		dd->tls = tls;
		dd->implicit = implicit;
		dd->auth_user = au ? strdup(au) : NULL;
		dd->auth_password = ap ? strdup(ap) : NULL;
		dd->window = INITIAL_WINDOW < m->dest_concurrency ? INITIAL_WINDOW : m->dest_concurrency;
		if (m->ndest + 1 > m->dtab_size)
			table_grow(m);
		size_t k = hash(key, m->dtab_size);
		dd->hnext = m->dtab[k];
		m->dtab[k] = dd;
		m->ndest++;
	}
	j->d = d;
	j->dest = dd;
	j->nrcpt = j->left = n;
	j->reported = flags;
	j->accepted = flags + n;
	if (dd->qtail)
		dd->qtail->next = j;
	else
		dd->qhead = j;
	dd->qtail = j;
	dd->nqueued++;
	smtp_tick_arm(m);
	pump(dd);
	return 0;
}

void smtp_dest_flush(struct smtp *m)
{
	int n = 0;
	for (size_t i = 0; i < m->dtab_size; i++)
		for (struct smtp_dest *dd = m->dtab[i]; dd; dd = dd->hnext)
			if (dd->dead_until) {
				dd->dead_until = 0;
				n++;
			}
	if (n)
		m->host->log(PETREL_LOG_INFO, "%s: flush: %d dead destination%s revived", m->name, n,
		             n == 1 ? "" : "s");
}

int smtp_dest_busy(const struct smtp *m)
{
	return m->ndest > 0 || m->nconn > 0;
}

void smtp_dest_tick(struct smtp *m, unsigned long long now)
{
	/* timeouts of connections (a failing one may open or close others:
	 * the next pointer is taken before) */
	for (struct smtp_conn *c = m->conns, *n; c; c = n) {
		n = smtp_conn_next(c);
		struct dref *r = smtp_conn_owner(c);
		if (smtp_conn_idle(c) && r && now - smtp_conn_idle_since(c) >= m->reuse_ms)
			smtp_conn_quit(c);
		else
			smtp_conn_check_timeout(c, now);
	}
	/* free what is empty, note what is due a pump: no longer dead, or
	 * held back by its window, which grew since (sessions came up), so
	 * a backlog that came due at once (a restart, a flush) gets its
	 * connections now instead of waiting for new mail or a close */
	struct smtp_dest *due = NULL;
	for (size_t i = 0; i < m->dtab_size; i++) {
		for (struct smtp_dest **p = &m->dtab[i]; *p;) {
			struct smtp_dest *dd = *p;
			int dead = dd->dead_until && now < dd->dead_until;
			int woke = !dead && dd->dead_until;
			if (woke)
				dd->dead_until = 0;
			if (!dead && dd->qhead && !dd->due &&
			    (woke || (dd->window_full && dd->nqueued > dd->nconn && dd->nconn < dd->window))) {
				dd->due = 1;             /* has qhead: not freed below */
				dd->pnext = due;
				due = dd;
			}
			if (!dead && !dd->qhead && !dd->nconn && !dd->resolving && !dd->starved) {
				*p = dd->hnext;
				m->ndest--;
				dest_free(dd);
				continue;
			}
			p = &dd->hnext;
		}
	}
	/* pumped after the walk: a pump may end jobs, and the core then
	 * starts others (smtp_dest_start), which may grow the table */
	while (due && !m->stopping) {
		struct smtp_dest *dd = due;
		due = dd->pnext;
		dd->pnext = NULL;
		dd->due = 0;
		pump(dd);
	}
}

void smtp_dest_stop(struct smtp *m)
{
	m->stopping = 1;
	while (m->conns)
		smtp_conn_abort(m->conns, "451 4.3.2 petrel is stopping");
	for (size_t i = 0; i < m->dtab_size; i++) {
		while (m->dtab[i]) {
			struct smtp_dest *dd = m->dtab[i];
			m->dtab[i] = dd->hnext;
			if (dd->resolving)
				smtp_dns_cancel(m->dns, dd->dns_token);
			flush_queue(dd, PETREL_DEFER, "451 4.3.2 petrel is stopping", NULL);
			dest_free(dd);
		}
	}
	m->ndest = 0;
	m->starved = NULL;
}
