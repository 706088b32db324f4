/*
 * qmsg.c - a queued message's envelope in memory: create, add
 * destinations, free.  Shared by the session (which builds it), recovery
 * (which reads it back) and the scheduler.
 */
#include "queue.h"
#include "mem.h"
#include "smtp_parse.h"

#include <petrel/module.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int addr_split(const char *address, char **local, char **domain)
{
	struct smtp_addr a;
	const char *end, *why;
	size_t n = strlen(address);
	char *p = xmalloc(n + 3);
	p[0] = '<';
	memcpy(p + 1, address, n);
	p[n + 1] = '>';
	p[n + 2] = 0;
	int r = smtp_parse_path(p, n + 2, false, true, &a, &end, &why);
	bool trailing = r == 0 && *end;
	free(p);
	if (r < 0 || trailing)
		return -1;
	*local = xstrdup(a.local_plain);
	*domain = xstrdup(a.domain);
	return 0;
}

struct qmsg *qmsg_new(const char *qid, const char *sender, time_t arrival)
{
	struct qmsg *m = xcalloc(1, sizeof *m);
	snprintf(m->qid, sizeof m->qid, "%s", qid);
	m->sender = xstrdup(sender);
	m->arrival = arrival;
	m->arrival_precise = (double)arrival;
	m->slot = -1;
	m->fd = -1;
	ev_timer_init(&m->retry, NULL, m);
	return m;
}

struct qdest *qmsg_add_dest(struct qmsg *m, const char *transport, const char *address,
                            const char *orig)
{
	char *local, *domain;
	if (addr_split(address, &local, &domain) < 0)
		return NULL;
	m->dests = xrealloc(m->dests, (size_t)(m->ndests + 1) * sizeof *m->dests);
	struct qdest *d = &m->dests[m->ndests++];
	*d = (struct qdest){ .transport = xstrdup(transport), .address = xstrdup(address),
	                     .orig = xstrdup(orig), .local = local, .domain = domain,
	                     .status = Q_PENDING };
	return d;
}

void qmsg_drop_dest(struct qmsg *m, int i)
{
	struct qdest *d = &m->dests[i];
	free(d->transport);
	free(d->address);
	free(d->orig);
	free(d->local);
	free(d->domain);
	free(d->last_error);
	free(d->orcpt);
	free(d->relay);
	memmove(d, d + 1, (size_t)(m->ndests - i - 1) * sizeof *d);
	m->ndests--;
}

void qmsg_free(struct qmsg **mp)
{
	struct qmsg *m = *mp;
	if (!m)
		return;
	while (m->ndests)
		qmsg_drop_dest(m, m->ndests - 1);
	free(m->dests);
	free(m->sender);
	free(m->envid);
	free(m);
	*mp = NULL;
}

char qdest_report_action(const struct qdest *d, bool warn)
{
	unsigned n = d->notify;
	if (n & PETREL_NOTIFY_NEVER)
		return 0;
	if (d->status == Q_BOUNCED && !d->reported)
		return !n || (n & PETREL_NOTIFY_FAILURE) ? 'f' : 0;
	if (d->success && (n & PETREL_NOTIFY_SUCCESS))
		return d->success;
	if (warn && d->status == Q_PENDING && (!n || (n & PETREL_NOTIFY_DELAY)))
		return 'w';
	return 0;
}

bool qmsg_report_due(const struct qmsg *m, bool warn)
{
	if (!m->sender[0])
		return false;
	for (int i = 0; i < m->ndests; i++)
		if (qdest_report_action(&m->dests[i], warn))
			return true;
	return false;
}

bool qmsg_bounce_due(const struct qmsg *m)
{
	return qmsg_report_due(m, false);
}
