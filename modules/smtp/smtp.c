/*
 * smtp.c - what the "smtp" and "lmtp" transports share: settings,
 * init/fini, start()/stop(), the tick.  The smtp transport (MTA stage)
 * relays mail to the recipient domain's MX hosts or to a relay host; the
 * lmtp transport (MDA stage) hands it to an LMTP server (RFC 2033) such
 * as Dovecot's, over TCP or a Unix socket.  Each is one shared object
 * built from these sources and its own descriptor (smtp_module.c,
 * modules/lmtp/lmtp.c), so each has its own settings and state.
 *
 * It runs asynchronously on the event loop (module API 1.2 start/stop):
 * start() queues the message, with every recipient for one next hop, on
 * its destination (smtp_dest.c), which resolves it (smtp_dns.c, c-ares)
 * and runs connections (smtp_client.c).  Each recipient is reported once
 * with the reply that decided it; delivery_done() follows when all are.
 * No thread is started: 1,000 connections are 1,000 fd watches.
 *
 * One module timer, the tick (TICK_MS), runs while there is anything to
 * do: connection deadlines, idle connections to close, c-ares timeouts,
 * empty destinations to free.  It is not rearmed when all is quiet.
 *
 * Settings are in seconds, like every time setting of petrel; the
 * timeouts default to RFC 5321 4.5.3.2.
 */
#include "smtp_int.h"
#include "smtp_syntax.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define TICK_MS 200

unsigned long long smtp_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000ULL + (unsigned long long)ts.tv_nsec / 1000000ULL;
}

/* --- jobs --- */

void smtp_job_result(struct smtp *m, struct smtp_job *j, int i, int result, const char *reply)
{
	if (i < 0 || i >= j->nrcpt || j->reported[i])
		return;
	j->reported[i] = 1;
	j->left--;
	m->host->delivery_rcpt_result(j->d, i, result, "%s", reply);
}

void smtp_job_result_all(struct smtp *m, struct smtp_job *j, int result, const char *reply)
{
	for (int i = 0; i < j->nrcpt; i++)
		smtp_job_result(m, j, i, result, reply);
}

void smtp_job_finish(struct smtp *m, struct smtp_job **pj)
{
	struct smtp_job *j = *pj;
	if (!j)
		return;
	/* a recipient nobody decided is deferred (the contract says so too;
	 * say why in our words) */
	smtp_job_result_all(m, j, PETREL_DEFER, "451 4.3.0 delivery was not completed");
	m->host->delivery_done(j->d);
	free(j->reported);    /* accepted[] shares the block */
	free(j);
	*pj = NULL;
}

/* --- the tick --- */

static void tick(void *arg)
{
	struct smtp *m = arg;
	m->tick_id = 0;
	if (m->stopping)
		return;
	smtp_dns_tick(m->dns);
	smtp_dest_tick(m, smtp_now());
	smtp_tick_arm(m);
}

void smtp_tick_arm(struct smtp *m)
{
	if (m->tick_id || m->stopping)
		return;
	if (!smtp_dest_busy(m) && !smtp_dns_busy(m->dns) && !m->conns)
		return;
	m->tick_id = m->host->timer_add(m->self, TICK_MS, tick, m);
}

/* --- the transport --- */

static int transport_start(void *state, petrel_delivery *d)
{
	struct smtp *m = state;
	char err[500];
	if (m->stopping) {
		m->host->delivery_status(d, "451 4.3.2 petrel is stopping");
		return -1;
	}
	if (smtp_dest_start(m, d, err, sizeof err) < 0) {
		m->host->delivery_status(d, "%s", err);
		return -1;
	}
	return 0;
}

static void transport_stop(void *state)
{
	struct smtp *m = state;
	if (m->stopping)
		return;
	smtp_dest_stop(m);   /* sets m->stopping */
	if (m->tick_id) {
		m->host->timer_cancel(m->self, m->tick_id);
		m->tick_id = 0;
	}
}

/* --- settings --- */

struct tsetting {
	const char *name;
	long long def;
	size_t off;
};

#define TO(field) offsetof(struct smtp_timeouts, field)
static const struct tsetting timeouts[] = {
	{ .name = "connect_timeout", .def = 30, .off = TO(connect) },
	{ .name = "greeting_timeout", .def = 300, .off = TO(greeting) },
	{ .name = "helo_timeout", .def = 300, .off = TO(helo) },   /* lmtp: lhlo_timeout */
	{ .name = "starttls_timeout", .def = 300, .off = TO(starttls) },
	{ .name = "auth_timeout", .def = 300, .off = TO(auth) },
	{ .name = "mail_timeout", .def = 300, .off = TO(mail) },
	{ .name = "rcpt_timeout", .def = 300, .off = TO(rcpt) },
	{ .name = "data_timeout", .def = 120, .off = TO(data_init) },
	{ .name = "data_block_timeout", .def = 180, .off = TO(data_block) },
	{ .name = "data_done_timeout", .def = 600, .off = TO(data_done) },
	{ .name = "rset_timeout", .def = 20, .off = TO(rset) },
	{ .name = "quit_timeout", .def = 20, .off = TO(quit) },
};

static int get_int(struct smtp *m, petrel_conf *conf, const char *name, long long def, long long min,
                   long long max, long long *out)
{
	*out = def;
	m->host->conf_int(conf, name, out);
	if (*out < min || *out > max) {
		m->host->conf_error(conf, name, "%lld is out of range (%lld to %lld)", *out, min, max);
		return -1;
	}
	return 0;
}

static int tls_init(struct smtp *m, petrel_conf *conf)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		m->host->conf_error(conf, "tls", "cannot create a TLS context");
		return -1;
	}
	m->ssl_ctx = ctx;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* verification is judged after the handshake, by policy: the chain
	 * and the name are checked always, and count for "verify" */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	int ok = m->tls_ca_file ? SSL_CTX_load_verify_locations(ctx, m->tls_ca_file, NULL)
	                        : SSL_CTX_set_default_verify_paths(ctx);
	if (!ok) {
		char buf[200];
		ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
		if (m->tls_ca_file) {
			m->host->conf_error(conf, "tls_ca_file", "cannot load '%s': %s", m->tls_ca_file, buf);
			return -1;
		}
		m->host->log(PETREL_LOG_WARN, "%s: the system's CA store could not be loaded: %s", m->name, buf);
	}
	return 0;
}

int smtp_setup(const struct petrel_host *host, petrel_conf *conf, void **state,
               const struct smtp_flavor *f)
{
	struct smtp *m = calloc(1, sizeof *m);
	if (!m)
		return -1;
	*state = m;
	m->host = host;
	m->self = conf;
	m->name = f->name;
	m->lmtp = f->lmtp;
	if (!PETREL_HOST_HAS(host, 2)) {
		host->conf_error(conf, "port", "the %s transport needs module API 1.2", f->name);
		return -1;
	}
	long long v;
	if (get_int(m, conf, "port", f->port, 1, 65535, &v) < 0)
		return -1;
	m->port = (int)v;
	if (get_int(m, conf, "destination_concurrency", 20, 1, 10000, &v) < 0)
		return -1;
	m->dest_concurrency = (int)v;
	if (get_int(m, conf, "total_concurrency", 100, 1, 100000, &v) < 0)
		return -1;
	m->total_concurrency = (int)v;
	if (get_int(m, conf, "connection_reuse_time", 5, 0, 3600, &v) < 0)
		return -1;
	m->reuse_ms = (unsigned long long)v * 1000;
	if (get_int(m, conf, "connection_reuse_count", 0, 0, 1000000, &v) < 0)
		return -1;
	m->reuse_count = (int)v;
	if (get_int(m, conf, "dead_time", 60, 0, 86400, &v) < 0)
		return -1;
	m->dead_ms = (unsigned long long)v * 1000;
	for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
		const char *name = timeouts[i].name;
		if (f->lmtp && timeouts[i].off == TO(helo))
			name = "lhlo_timeout";
		if (get_int(m, conf, name, timeouts[i].def, 1, 86400, &v) < 0)
			return -1;
		*(unsigned long long *)((char *)&m->to + timeouts[i].off) = (unsigned long long)v * 1000;
	}
	if (f->lmtp) {
		host->conf_string(conf, "nexthop", &m->nexthop);
		char hop[300];
		int port, is_unix;
		if (m->nexthop && *m->nexthop &&
		    smtp_parse_lmtp_nexthop(m->nexthop, hop, sizeof hop, &port, &is_unix) < 0) {
			host->conf_error(conf, "nexthop", "'%s': must be \"unix:/path\", \"[host]:port\" or "
			                 "\"host:port\"", m->nexthop);
			return -1;
		}
		if (!m->nexthop || !*m->nexthop)
			host->log(PETREL_LOG_WARN, "%s: no nexthop is set: only routes that name one can "
			          "deliver (modules.%s.nexthop = \"unix:/run/dovecot/lmtp\", for one)", m->name,
			          m->name);
	}
	const char *tls = f->tls;
	host->conf_string(conf, "tls", &tls);
	if (!strcmp(tls, "none"))
		m->tls = TLS_NONE;
	else if (!strcmp(tls, "may"))
		m->tls = TLS_MAY;
	else if (!strcmp(tls, "encrypt"))
		m->tls = TLS_ENCRYPT;
	else if (!strcmp(tls, "verify"))
		m->tls = TLS_VERIFY;
	else {
		host->conf_error(conf, "tls", "'%s': must be \"none\", \"may\", \"encrypt\" or \"verify\"", tls);
		return -1;
	}
	host->conf_string(conf, "tls_ca_file", &m->tls_ca_file);
	if (m->tls_ca_file && access(m->tls_ca_file, R_OK) < 0) {
		host->conf_error(conf, "tls_ca_file", "cannot read '%s'", m->tls_ca_file);
		return -1;
	}
	m->hostname = host->global_string("hostname");
	if (!m->hostname || !*m->hostname)
		m->hostname = "localhost";
	if (tls_init(m, conf) < 0)
		return -1;
	char err[300];
	const char *resolver = host->global_string("resolver");
	if (smtp_dns_new(m, resolver, &m->dns, err, sizeof err) < 0) {
		host->conf_error(conf, "port", "%s", err);
		return -1;
	}
	srandom((unsigned)(smtp_now() ^ (unsigned long long)getpid()));
	return 0;
}

void smtp_teardown(void *state)
{
	struct smtp *m = state;
	if (!m)
		return;
	transport_stop(m);
	smtp_dns_free(&m->dns);
	if (m->ssl_ctx)
		SSL_CTX_free(m->ssl_ctx);
	free(m->dtab);
	free(m);
}

static void transport_flush(void *state)
{
	smtp_dest_flush(state);
}

const struct petrel_transport_ops smtp_transport_ops = {
	.start = transport_start,
	.stop = transport_stop,
	.flush = transport_flush,
};

