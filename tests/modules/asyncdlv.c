/*
 * asyncdlv.c - the "asynctest" test module: an asynchronous transport
 * (API 1.2 start()/stop()) that answers after a timer, with a result
 * chosen by each recipient's local part:
 *
 *   bounce...      PETREL_BOUNCE  "550 5.1.1 <rcpt>: Recipient address rejected"
 *   defer...       PETREL_DEFER   "451 4.3.0 <rcpt>: try again later" (always)
 *   twiceN...      deferred the first N attempts of this address, then delivered
 *   relay...       PETREL_RELAYED "250 2.0.0 Ok: relayed" (next hop without DSN)
 *   silent...      no result at all: the core must defer it
 *   refuse...      refused by check() at RCPT ("550 5.1.1 ... refused by asynctest")
 *   anything else  PETREL_DELIVERED "250 2.0.0 Ok: queued as T<n>"
 *
 * The whole message is read (delivery_read) before the results, so that
 * a test sees its bytes count; relay= is "asynctest.test[127.0.0.9]:25".
 * It logs one line per start():
 *   "asynctest: start qid=Q n=N nexthop=H tls=T tls_mode=M auth_user=U
 *    envid=E bytes=B rcpts=a(NOTIFY,ORCPT),b(...)"
 * and "asynctest: stop held=N" when the daemon stops.
 *
 * A real module using the real API, loaded by the black-box tests to
 * drive the core's scheduler before (and beside) the smtp transport.
 * Memory: one record per started delivery until its timer fires; a
 * small table of per-address attempt counts for twiceN.
 */
#include <petrel/petrel.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct pending {
	struct atest *at;
	petrel_delivery *d;
	unsigned long long timer;
	struct pending *prev, *next;
};

struct count {
	char *addr;
	int n;
};

struct atest {
	const struct petrel_host *host;
	petrel_conf *self;
	long long delay_ms;
	struct pending *list;
	int held;
	struct count *counts;
	int ncounts;
	unsigned long long serial;
};

static void unlink_p(struct pending *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		p->at->list = p->next;
	if (p->next)
		p->next->prev = p->prev;
	p->at->held--;
}

static int bump(struct atest *at, const char *addr)
{
	for (int i = 0; i < at->ncounts; i++)
		if (!strcasecmp(at->counts[i].addr, addr))
			return ++at->counts[i].n;
	struct count *c = realloc(at->counts, (size_t)(at->ncounts + 1) * sizeof *c);
	if (!c)
		return 1;
	at->counts = c;
	at->counts[at->ncounts] = (struct count){ .addr = strdup(addr), .n = 1 };
	return at->counts[at->ncounts++].n;
}

static void answer(struct atest *at, petrel_delivery *d)
{
	const struct petrel_host *h = at->host;
	h->delivery_relay(d, "asynctest.test[127.0.0.9]:25");
	for (int i = 0; i < h->delivery_rcpt_count(d); i++) {
		const char *r = h->delivery_rcpt(d, i);
		if (!strncasecmp(r, "bounce", 6)) {
			h->delivery_rcpt_result(d, i, PETREL_BOUNCE,
			                        "550 5.1.1 <%s>: Recipient address rejected", r);
		} else if (!strncasecmp(r, "defer", 5)) {
			h->delivery_rcpt_result(d, i, PETREL_DEFER, "451 4.3.0 <%s>: try again later", r);
		} else if (!strncasecmp(r, "twice", 5)) {
			int limit = atoi(r + 5), n = bump(at, r);
			if (n <= limit)
				h->delivery_rcpt_result(d, i, PETREL_DEFER,
				                        "451 4.3.0 <%s>: not yet (attempt %d)", r, n);
			else
				h->delivery_rcpt_result(d, i, PETREL_DELIVERED,
				                        "250 2.0.0 Ok: queued as T%llu", ++at->serial);
		} else if (!strncasecmp(r, "relay", 5)) {
			h->delivery_rcpt_result(d, i, PETREL_RELAYED, "250 2.0.0 Ok: relayed");
		} else if (!strncasecmp(r, "silent", 6)) {
			/* no result: deferred by the core */
		} else {
			h->delivery_rcpt_result(d, i, PETREL_DELIVERED, "250 2.0.0 Ok: queued as T%llu",
			                        ++at->serial);
		}
	}
	h->delivery_done(d);
}

static void fire(void *arg)
{
	struct pending *p = arg;
	struct atest *at = p->at;
	unlink_p(p);
	petrel_delivery *d = p->d;
	free(p);
	answer(at, d);
}

static int at_start(void *state, petrel_delivery *d)
{
	struct atest *at = state;
	const struct petrel_host *h = at->host;
	char buf[65536], rcpts[2048] = "";
	unsigned long long bytes = 0;
	ssize_t n;
	while ((n = h->delivery_read(d, buf, sizeof buf)) > 0)
		bytes += (unsigned long long)n;
	size_t used = 0;
	for (int i = 0; i < h->delivery_rcpt_count(d) && used < sizeof rcpts - 1; i++) {
		int k = snprintf(rcpts + used, sizeof rcpts - used, "%s%s(%u,%s)", i ? "," : "",
		                 h->delivery_rcpt(d, i), h->delivery_rcpt_notify(d, i),
		                 h->delivery_rcpt_orcpt(d, i));
		if (k < 0)
			break;
		used += (size_t)k;
		if (used >= sizeof rcpts)
			used = sizeof rcpts - 1;
	}
	const char *tls = h->delivery_route_option(d, "tls");
	const char *mode = h->delivery_route_option(d, "tls_mode");
	const char *user = h->delivery_route_option(d, "auth_user");
	h->log(PETREL_LOG_INFO, "asynctest: start qid=%s n=%d nexthop=%s tls=%s tls_mode=%s "
	       "auth_user=%s envid=%s flags=%u bytes=%llu size=%llu rcpts=%s", h->delivery_qid(d),
	       h->delivery_rcpt_count(d), h->delivery_nexthop(d), tls ? tls : "-",
	       mode ? mode : "-", user ? user : "-", h->delivery_envid(d), h->delivery_flags(d),
	       bytes, h->delivery_size(d), rcpts);
	struct pending *p = calloc(1, sizeof *p);
	if (!p) {
		h->delivery_status(d, "out of memory");
		return -1;
	}
	p->at = at;
	p->d = d;
	p->next = at->list;
	if (at->list)
		at->list->prev = p;
	at->list = p;
	at->held++;
	p->timer = h->timer_add(at->self, (unsigned long long)at->delay_ms, fire, p);
	return 0;
}

static void at_stop(void *state)
{
	struct atest *at = state;
	at->host->log(PETREL_LOG_INFO, "asynctest: stop held=%d", at->held);
	while (at->list) {
		struct pending *p = at->list;
		at->host->timer_cancel(at->self, p->timer);
		unlink_p(p);
		petrel_delivery *d = p->d;
		free(p);
		at->host->delivery_status(d, "daemon stopping");
		at->host->delivery_done(d);       /* unreported: deferred */
	}
}

static int at_check(void *state, const char *address, const char *local, const char *domain,
                    char *reply, size_t size)
{
	(void)state;
	(void)domain;
	if (!strncasecmp(local, "refuse", 6)) {
		snprintf(reply, size, "550 5.1.1 <%s>: refused by asynctest", address);
		return PETREL_CHECK_REFUSE;
	}
	return PETREL_CHECK_OK;
}

static int at_init(const struct petrel_host *host, petrel_conf *conf, void **state)
{
	struct atest *at = calloc(1, sizeof *at);
	if (!at)
		return -1;
	*state = at;
	at->host = host;
	at->self = conf;
	at->delay_ms = 50;
	host->conf_int(conf, "delay_ms", &at->delay_ms);
	if (!PETREL_HOST_HAS(host, 2)) {
		host->conf_error(conf, "delay_ms", "needs a daemon with module API 1.2");
		return -1;
	}
	return 0;
}

static void at_fini(void *state)
{
	struct atest *at = state;
	if (!at)
		return;
	for (int i = 0; i < at->ncounts; i++)
		free(at->counts[i].addr);
	free(at->counts);
	while (at->list) {
		struct pending *p = at->list;
		unlink_p(p);
		free(p);
	}
	free(at);
}

static const struct petrel_setting at_settings[] = {
	{ .name = "delay_ms", .type = PETREL_SET_INT, .help = "milliseconds before the answer (default 50)" },
	{ .type = PETREL_SET_END },
};

static const struct petrel_transport_ops at_ops = {
	.check = at_check,
	.start = at_start,
	.stop = at_stop,
};

PETREL_MODULE(
	.name = "asynctest",
	.version = "1.0",
	.summary = "test transport: answers on a timer, result by local part",
	.settings = at_settings,
	.init = at_init,
	.fini = at_fini,
	.transport = &at_ops,
);
