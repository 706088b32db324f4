/*
 * smtp_dns.c - next-hop lookups with c-ares, driven by the event loop.
 *
 * No resolver thread: c-ares tells us which sockets it wants watched
 * (ARES_OPT_SOCK_STATE_CB), host->fd_watch calls ares_process_fd on
 * readiness, and the module's tick calls ares_process_fd with no socket
 * so c-ares runs its own timeouts and retries.
 *
 * A lookup by MX (RFC 5321 5.1): the MX records in preference order,
 * random among equal preferences; no MX record (NODATA) means the domain
 * itself as the only host (the implicit MX); a null MX (RFC 7505: one
 * record "." at preference 0) bounces with 5.1.10; NXDOMAIN bounces;
 * SERVFAIL, REFUSED and timeouts defer.  Each MX host is then resolved
 * to its A and AAAA addresses (ares_getaddrinfo).  A bracketed next hop
 * skips the MX step.  The answer is a list of targets, at most
 * MAX_TARGETS, in the order they should be tried.
 *
 * The top-level 'resolver' setting ("ADDR:PORT") names the one server
 * to ask instead of /etc/resolv.conf.
 *
 * Completion always comes from the loop (a 0 ms timer), never from
 * inside smtp_dns_resolve(), so a caller can hold no half-built state.
 */
#include "smtp_int.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MX 10
#define MAX_TARGETS 20

struct mxhost {
	char name[256];
	int pref;
	unsigned rnd;
	int status;                     /* ARES_* of its address lookup */
	struct ares_addrinfo *ai;
};

struct dns_req {
	struct smtp_dns *dns;
	unsigned long long token;
	struct dns_req *prev, *next;
	char name[256];
	int port;
	int pending;                    /* c-ares queries outstanding */
	int cancelled;
	int launching;                  /* inside smtp_dns_resolve */
	struct mxhost hosts[MAX_MX];
	int nhosts;
	int implicit;                   /* no MX: the name itself */
	struct smtp_resolved res;       /* set when the answer is known early */
	int failed;                     /* res holds a failure already */
	unsigned long long timer;       /* the 0 ms timer that hands the answer over */
	smtp_dns_done_fn *done;
	void *arg;
};

struct smtp_dns {
	struct smtp *m;
	ares_channel ch;
	struct dns_req *reqs;
	unsigned long long next_token;
	int nreq;
};

static void sock_cb(int fd, int events, void *arg)
{
	struct smtp_dns *dns = arg;
	ares_process_fd(dns->ch, events & PETREL_FD_READ ? fd : ARES_SOCKET_BAD,
	                events & PETREL_FD_WRITE ? fd : ARES_SOCKET_BAD);
}

static void sock_state(void *data, ares_socket_t s, int readable, int writable)
{
	struct smtp_dns *dns = data;
	const struct petrel_host *h = dns->m->host;
	int ev = (readable ? PETREL_FD_READ : 0) | (writable ? PETREL_FD_WRITE : 0);
	if (h->fd_watch(dns->m->self, s, ev, ev ? sock_cb : NULL, dns) < 0 && ev)
		h->log(PETREL_LOG_WARN, "%s: cannot watch the DNS socket %d", dns->m->name, (int)s);
}

int smtp_dns_new(struct smtp *m, const char *server, struct smtp_dns **out, char *err, size_t errsize)
{
	*out = NULL;
	int r = ares_library_init(ARES_LIB_INIT_ALL);
	if (r != ARES_SUCCESS) {
		snprintf(err, errsize, "c-ares: %s", ares_strerror(r));
		return -1;
	}
	struct smtp_dns *dns = calloc(1, sizeof *dns);
	if (!dns) {
		ares_library_cleanup();
		snprintf(err, errsize, "out of memory");
		return -1;
	}
	dns->m = m;
	struct ares_options o = {
		.sock_state_cb = sock_state,
		.sock_state_cb_data = dns,
		.timeout = 2000,
		.tries = 2,
		.lookups = (char *)"fb",
	};
	r = ares_init_options(&dns->ch, &o,
	                      ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS);
	if (r != ARES_SUCCESS) {
		snprintf(err, errsize, "c-ares init: %s", ares_strerror(r));
		free(dns);
		ares_library_cleanup();
		return -1;
	}
	if (server && *server) {
		r = ares_set_servers_ports_csv(dns->ch, server);
		if (r != ARES_SUCCESS) {
			snprintf(err, errsize, "resolver '%s': %s (want ADDR:PORT)", server, ares_strerror(r));
			ares_destroy(dns->ch);
			free(dns);
			ares_library_cleanup();
			return -1;
		}
	}
	*out = dns;
	return 0;
}

void smtp_dns_free(struct smtp_dns **pdns)
{
	struct smtp_dns *dns = *pdns;
	if (!dns)
		return;
	/* Callbacks of the cancelled queries see ARES_EDESTRUCTION: they only
	 * count down (every request is marked cancelled first). */
	for (struct dns_req *q = dns->reqs; q; q = q->next)
		q->cancelled = 1;
	ares_destroy(dns->ch);
	while (dns->reqs) {
		struct dns_req *q = dns->reqs;
		dns->reqs = q->next;
		if (q->timer)
			dns->m->host->timer_cancel(dns->m->self, q->timer);
		free(q->res.targets);
		for (int i = 0; i < q->nhosts; i++)
			if (q->hosts[i].ai)
				ares_freeaddrinfo(q->hosts[i].ai);
		free(q);
	}
	free(dns);
	ares_library_cleanup();
	*pdns = NULL;
}

int smtp_dns_busy(const struct smtp_dns *dns)
{
	return dns && dns->nreq > 0;
}

void smtp_dns_tick(struct smtp_dns *dns)
{
	if (dns && dns->nreq)
		ares_process_fd(dns->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

static void req_unlink_free(struct dns_req *q)
{
	struct smtp_dns *dns = q->dns;
	if (q->prev)
		q->prev->next = q->next;
	else
		dns->reqs = q->next;
	if (q->next)
		q->next->prev = q->prev;
	dns->nreq--;
	for (int i = 0; i < q->nhosts; i++)
		if (q->hosts[i].ai)
			ares_freeaddrinfo(q->hosts[i].ai);
	free(q->res.targets);
	free(q);
}

static void fail(struct dns_req *q, int status, const char *fmt, ...) PETREL_PRINTF(3, 4);
static void fail(struct dns_req *q, int status, const char *fmt, ...)
{
	if (q->failed)
		return;
	q->failed = 1;
	q->res.status = status;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q->res.reason, sizeof q->res.reason, fmt, ap);
	va_end(ap);
}

static int temporary(int status)
{
	return status != ARES_ENOTFOUND && status != ARES_ENODATA && status != ARES_EBADNAME;
}

/* Build the target list from the hosts' addresses, in host order. */
static void assemble(struct dns_req *q)
{
	q->res.targets = calloc(MAX_TARGETS, sizeof *q->res.targets);
	if (!q->res.targets) {
		fail(q, PETREL_DEFER, "451 4.3.0 out of memory resolving %s", q->name);
		return;
	}
	int n = 0, anytemp = 0, lastst = ARES_SUCCESS;
	for (int i = 0; i < q->nhosts && n < MAX_TARGETS; i++) {
		struct mxhost *hst = &q->hosts[i];
		if (hst->status != ARES_SUCCESS || !hst->ai) {
			anytemp |= temporary(hst->status);
			lastst = hst->status;
			continue;
		}
		for (struct ares_addrinfo_node *a = hst->ai->nodes; a && n < MAX_TARGETS; a = a->ai_next) {
			if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
				continue;
			struct smtp_target *t = &q->res.targets[n];
			snprintf(t->name, sizeof t->name, "%s", hst->name);
			memcpy(&t->sa, a->ai_addr, a->ai_addrlen);
			t->salen = a->ai_addrlen;
			t->port = q->port;
			t->pref = hst->pref;
			if (a->ai_family == AF_INET) {
				struct sockaddr_in *s4 = (struct sockaddr_in *)&t->sa;
				s4->sin_port = htons((unsigned short)q->port);
				inet_ntop(AF_INET, &s4->sin_addr, t->ip, sizeof t->ip);
			} else {
				struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&t->sa;
				s6->sin6_port = htons((unsigned short)q->port);
				inet_ntop(AF_INET6, &s6->sin6_addr, t->ip, sizeof t->ip);
			}
			/* the same address twice (two names for one host) is tried once */
			int dup = 0;
			for (int k = 0; k < n && !dup; k++)
				dup = !strcmp(q->res.targets[k].ip, t->ip);
			if (!dup)
				n++;
		}
	}
	q->res.ntargets = n;
	if (n) {
		q->res.status = PETREL_DELIVERED;
		return;
	}
	free(q->res.targets);
	q->res.targets = NULL;
	if (anytemp)
		fail(q, PETREL_DEFER, "451 4.4.3 Host or domain name lookup failed for %s%s: %s "
		     "(try again later)", q->implicit ? "" : "the MX hosts of ", q->name, ares_strerror(lastst));
	else
		fail(q, PETREL_BOUNCE, "550 5.4.4 Host or domain name not found: %s%s has no address",
		     q->implicit ? "" : "the MX hosts of ", q->name);
}

static void deliver_answer(void *arg)
{
	struct dns_req *q = arg;
	q->timer = 0;
	if (!q->cancelled) {
		if (!q->failed)
			assemble(q);
		q->cancelled = 1;   /* the answer is given once */
		struct smtp_resolved r = q->res;
		q->res.targets = NULL;    /* the receiver owns them */
		q->done(q->arg, &r);
	}
	req_unlink_free(q);
}

/* One outstanding query fewer; the answer goes out when none is left. */
static void settle(struct dns_req *q)
{
	if (--q->pending > 0 || q->launching)
		return;
	if (q->cancelled && !q->dns->m->stopping) {
		req_unlink_free(q);
		return;
	}
	if (q->dns->m->stopping) {
		/* ares_destroy is running: smtp_dns_free frees the request */
		return;
	}
	q->timer = q->dns->m->host->timer_add(q->dns->m->self, 0, deliver_answer, q);
	if (!q->timer)
		deliver_answer(q);
}

static void addr_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct mxhost *hst = arg;
	(void)timeouts;
	hst->status = status;
	hst->ai = status == ARES_SUCCESS ? res : NULL;
	if (status != ARES_SUCCESS && res)
		ares_freeaddrinfo(res);
}

struct addr_arg {
	struct dns_req *q;
	int i;
};

static void addr_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct addr_arg *aa = arg;
	struct dns_req *q = aa->q;
	int i = aa->i;
	free(aa);
	if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
		if (res)
			ares_freeaddrinfo(res);
		q->hosts[i].status = status;
		if (!q->dns->m->stopping)
			settle(q);
		return;
	}
	addr_cb(&q->hosts[i], status, timeouts, res);
	settle(q);
}

static void lookup_addresses(struct dns_req *q)
{
	struct ares_addrinfo_hints hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	for (int i = 0; i < q->nhosts; i++) {
		struct addr_arg *aa = malloc(sizeof *aa);
		if (!aa) {
			q->hosts[i].status = ARES_ENOMEM;
			continue;
		}
		aa->q = q;
		aa->i = i;
		q->pending++;
		ares_getaddrinfo(q->dns->ch, q->hosts[i].name, NULL, &hints, addr_done, aa);
	}
}

static int mx_cmp(const void *a, const void *b)
{
	const struct mxhost *x = a, *y = b;
	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	return x->rnd < y->rnd ? -1 : x->rnd > y->rnd;
}

static void mx_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_req *q = arg;
	(void)timeouts;
	if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED || q->cancelled) {
		if (!q->dns->m->stopping)
			settle(q);
		return;
	}
	struct ares_mx_reply *mx = NULL;
	if (status == ARES_SUCCESS) {
		status = ares_parse_mx_reply(abuf, alen, &mx);
		if (status == ARES_SUCCESS && !mx)
			status = ARES_ENODATA;
	}
	if (status == ARES_ENODATA) {
		/* no MX: the domain is its own mail host (RFC 5321 5.1) */
		q->implicit = 1;
		snprintf(q->hosts[0].name, sizeof q->hosts[0].name, "%s", q->name);
		q->nhosts = 1;
		lookup_addresses(q);
	} else if (status == ARES_ENOTFOUND) {
		fail(q, PETREL_BOUNCE, "550 5.4.4 Host or domain name not found: %s (NXDOMAIN)", q->name);
	} else if (status != ARES_SUCCESS) {
		fail(q, PETREL_DEFER, "451 4.4.3 Host or domain name lookup failed for %s: %s "
		     "(try again later)", q->name, ares_strerror(status));
	} else {
		int null_mx = 0, n = 0;
		for (struct ares_mx_reply *r = mx; r; r = r->next) {
			if ((!r->host[0] || !strcmp(r->host, ".")) ) {
				if (r->priority == 0)
					null_mx = 1;
				continue;
			}
			if (n < MAX_MX) {
				snprintf(q->hosts[n].name, sizeof q->hosts[n].name, "%s", r->host);
				q->hosts[n].pref = r->priority;
				q->hosts[n].rnd = (unsigned)random();
				n++;
			}
		}
		if (null_mx)
			fail(q, PETREL_BOUNCE, "556 5.1.10 Domain %s does not accept mail (null MX)", q->name);
		else if (!n)
			fail(q, PETREL_BOUNCE, "550 5.4.4 %s has MX records but no usable host", q->name);
		else {
			qsort(q->hosts, (size_t)n, sizeof q->hosts[0], mx_cmp);
			q->nhosts = n;
			lookup_addresses(q);
		}
	}
	if (mx)
		ares_free_data(mx);
	settle(q);
}

unsigned long long smtp_dns_resolve(struct smtp_dns *dns, const char *name, int mx, int port,
                                    smtp_dns_done_fn *done, void *arg)
{
	struct dns_req *q = calloc(1, sizeof *q);
	if (!q)
		return 0;
	q->dns = dns;
	q->token = ++dns->next_token;
	q->done = done;
	q->arg = arg;
	q->port = port;
	snprintf(q->name, sizeof q->name, "%s", name);
	q->next = dns->reqs;
	if (dns->reqs)
		dns->reqs->prev = q;
	dns->reqs = q;
	dns->nreq++;
	q->launching = 1;
	q->pending = 1;     /* this function's own hold */
	struct in6_addr a6;
	struct in_addr a4;
	if (!mx || inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1) {
		q->implicit = 1;
		snprintf(q->hosts[0].name, sizeof q->hosts[0].name, "%s", name);
		q->nhosts = 1;
		lookup_addresses(q);
	} else {
		q->pending++;
		ares_query(dns->ch, name, ns_c_in, ns_t_mx, mx_done, q);
	}
	q->launching = 0;
	unsigned long long token = q->token;
	settle(q);
	smtp_tick_arm(dns->m);
	return token;
}

void smtp_dns_cancel(struct smtp_dns *dns, unsigned long long token)
{
	for (struct dns_req *q = dns ? dns->reqs : NULL; q; q = q->next)
		if (q->token == token) {
			q->cancelled = 1;   /* freed when its queries settle */
			return;
		}
}
