/*
 * stats.c - the counter store of stats.h and its text exposition.
 *
 * Every value is a relaxed atomic in one static struct (no allocation, no
 * lock): writers on any thread, readers (the metrics endpoint on the loop,
 * petrelctl stats later) take each value whole.  Label slots are indexed by
 * configuration position; the last slot of each array is "other".
 */
#include "stats.h"
#include "mem.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef _Atomic uint64_t acnt;
typedef _Atomic int64_t agauge;

#define ADD(v, n) atomic_fetch_add_explicit(&(v), (n), memory_order_relaxed)
#define GET(v) atomic_load_explicit(&(v), memory_order_relaxed)
#define SET(v, n) atomic_store_explicit(&(v), (n), memory_order_relaxed)

const double stats_delay_bounds[STATS_DELAY_BUCKETS] = {
	0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300, 3600, 86400,
};

static const char *const reject_names[STATS_REJECT_N] = {
	[STATS_REJECT_RECIPIENT] = "recipient",
	[STATS_REJECT_FILTER] = "filter",
	[STATS_REJECT_SIZE] = "size",
	[STATS_REJECT_PROTOCOL] = "protocol",
	[STATS_REJECT_POLICY] = "policy",
	[STATS_REJECT_OTHER] = "other",
};

static const char *const outcome_names[STATS_OUTCOME_N] = {
	[STATS_DELIVERED] = "delivered",
	[STATS_DEFERRED] = "deferred",
	[STATS_BOUNCED] = "bounced",
};

static const char *const queue_names[STATS_QUEUE_N] = {
	[STATS_QUEUE_ACTIVE] = "active",
	[STATS_QUEUE_DEFERRED] = "deferred",
	[STATS_QUEUE_HOLD] = "hold",
};

static struct {
	/* names are written at start, before any reader: plain chars */
	char listener[STATS_MAX_LISTENERS + 1][STATS_NAME_MAX];
	char transport[STATS_MAX_TRANSPORTS + 1][STATS_NAME_MAX];
	acnt connections[STATS_MAX_LISTENERS + 1];
	acnt received[STATS_MAX_LISTENERS + 1];
	acnt rejected[STATS_MAX_LISTENERS + 1][STATS_REJECT_N];
	acnt outcome[STATS_MAX_TRANSPORTS + 1][STATS_OUTCOME_N];
	acnt bytes_in, bytes_out;
	acnt tls_ok, tls_failed, auth_ok, auth_failed;
	agauge sessions_open;
	agauge queue[STATS_QUEUE_N];
	agauge oldest_arrival;
	acnt spool_free;
	acnt delay_bucket[STATS_DELAY_BUCKETS + 1];   /* per bucket, +Inf last */
	acnt delay_sum_us;
	acnt delay_count;
	agauge start_unix;
} st;

enum stats_reject_reason stats_reject_reason_of(const char *cmd, const char *reply)
{
	if (cmd && strcmp(cmd, "RCPT") == 0)
		return STATS_REJECT_RECIPIENT;
	const char *p = reply ? reply : "";
	if (!(p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9'))
		return STATS_REJECT_OTHER;
	int code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	p += 3;
	if (*p == ' ' || *p == '-')
		p++;
	unsigned subject = 0, detail = 0;
	int n = 0;
	if (p[0] >= '2' && p[0] <= '5' && p[1] == '.' &&
	    sscanf(p + 2, "%3u.%3u%n", &subject, &detail, &n) == 2 && n > 0) {
		if (subject == 3 && detail == 4)
			return STATS_REJECT_SIZE;
		if (subject == 5)
			return STATS_REJECT_PROTOCOL;
		if (subject == 7)
			return STATS_REJECT_POLICY;
		return STATS_REJECT_OTHER;
	}
	if (code == 552)
		return STATS_REJECT_SIZE;
	if (code >= 500 && code <= 504)
		return STATS_REJECT_PROTOCOL;
	return STATS_REJECT_OTHER;
}

const char *stats_reject_reason_name(enum stats_reject_reason r)
{
	return (unsigned)r < STATS_REJECT_N ? reject_names[r] : "other";
}

static int lslot(int i) { return i >= 0 && i < STATS_MAX_LISTENERS ? i : STATS_MAX_LISTENERS; }
static int tslot(int i) { return i >= 0 && i < STATS_MAX_TRANSPORTS ? i : STATS_MAX_TRANSPORTS; }

static void setname(char *dst, const char *name)
{
	size_t n = strlen(name);
	if (n >= STATS_NAME_MAX)
		n = STATS_NAME_MAX - 1;
	memcpy(dst, name, n);
	dst[n] = 0;
}

void stats_set_listener_name(int idx, const char *name)
{
	if (idx >= 0 && idx < STATS_MAX_LISTENERS && name)
		setname(st.listener[idx], name);
}

void stats_set_transport_name(int idx, const char *name)
{
	if (idx >= 0 && idx < STATS_MAX_TRANSPORTS && name)
		setname(st.transport[idx], name);
}

int stats_transport_slot(const char *name)
{
	for (int i = 0; name && *name && i < STATS_MAX_TRANSPORTS; i++)
		if (strcmp(st.transport[i], name) == 0)
			return i;
	return -1;
}

void stats_connection(int listener) { ADD(st.connections[lslot(listener)], 1); }
void stats_session_open(int delta) { ADD(st.sessions_open, delta); }
void stats_bytes_in(uint64_t n) { ADD(st.bytes_in, n); }
void stats_tls_handshake(bool ok) { if (ok) ADD(st.tls_ok, 1); else ADD(st.tls_failed, 1); }
void stats_auth(bool ok) { if (ok) ADD(st.auth_ok, 1); else ADD(st.auth_failed, 1); }

void stats_received(int listener, uint64_t bytes)
{
	(void)bytes;   /* the caller counts them in bytes_in (stats_bytes_in) */
	ADD(st.received[lslot(listener)], 1);
}

void stats_rejected(int listener, enum stats_reject_reason why)
{
	if ((unsigned)why >= STATS_REJECT_N)
		why = STATS_REJECT_OTHER;
	ADD(st.rejected[lslot(listener)][why], 1);
}

void stats_outcome(int transport, enum stats_outcome o, uint64_t bytes, double delay_s)
{
	if ((unsigned)o >= STATS_OUTCOME_N)
		return;
	ADD(st.outcome[tslot(transport)][o], 1);
	if (o == STATS_DEFERRED)
		return;   /* the delay histogram is of final outcomes */
	if (o == STATS_DELIVERED)
		ADD(st.bytes_out, bytes);
	if (delay_s < 0)
		delay_s = 0;
	int b = 0;
	while (b < STATS_DELAY_BUCKETS && delay_s > stats_delay_bounds[b])
		b++;
	ADD(st.delay_bucket[b], 1);
	ADD(st.delay_sum_us, (uint64_t)(delay_s * 1e6));
	ADD(st.delay_count, 1);
}

void stats_queue_set(enum stats_queue_state s, int64_t n) { if ((unsigned)s < STATS_QUEUE_N) SET(st.queue[s], n); }
void stats_queue_add(enum stats_queue_state s, int64_t d) { if ((unsigned)s < STATS_QUEUE_N) ADD(st.queue[s], d); }
void stats_oldest_queued_set(int64_t t) { SET(st.oldest_arrival, t); }
void stats_spool_free_set(uint64_t bytes) { SET(st.spool_free, bytes); }

void stats_mark_start(int64_t t) { SET(st.start_unix, t); }

void stats_reset(void)
{
	memset(&st, 0, sizeof st);
	SET(st.start_unix, (int64_t)time(NULL));
}

void stats_snapshot(struct stats_snapshot *s)
{
	memset(s, 0, sizeof *s);
	if (GET(st.start_unix) == 0)
		SET(st.start_unix, (int64_t)time(NULL));
	memcpy(s->listener, st.listener, sizeof s->listener);
	memcpy(s->transport, st.transport, sizeof s->transport);
	for (int i = 0; i < STATS_MAX_LISTENERS; i++)
		if (!s->listener[i][0])
			snprintf(s->listener[i], STATS_NAME_MAX, "%d", i);
	for (int i = 0; i < STATS_MAX_TRANSPORTS; i++)
		if (!s->transport[i][0])
			snprintf(s->transport[i], STATS_NAME_MAX, "%d", i);
	setname(s->listener[STATS_MAX_LISTENERS], "other");
	setname(s->transport[STATS_MAX_TRANSPORTS], "other");
	for (int i = 0; i <= STATS_MAX_LISTENERS; i++) {
		s->connections[i] = GET(st.connections[i]);
		s->received[i] = GET(st.received[i]);
		for (int r = 0; r < STATS_REJECT_N; r++)
			s->rejected[i][r] = GET(st.rejected[i][r]);
	}
	for (int i = 0; i <= STATS_MAX_TRANSPORTS; i++)
		for (int o = 0; o < STATS_OUTCOME_N; o++)
			s->outcome[i][o] = GET(st.outcome[i][o]);
	s->bytes_in = GET(st.bytes_in);
	s->bytes_out = GET(st.bytes_out);
	s->tls_ok = GET(st.tls_ok);
	s->tls_failed = GET(st.tls_failed);
	s->auth_ok = GET(st.auth_ok);
	s->auth_failed = GET(st.auth_failed);
	s->sessions_open = GET(st.sessions_open);
	for (int q = 0; q < STATS_QUEUE_N; q++)
		s->queue[q] = GET(st.queue[q]);
	s->oldest_arrival = GET(st.oldest_arrival);
	s->spool_free = GET(st.spool_free);
	for (int b = 0; b <= STATS_DELAY_BUCKETS; b++)
		s->delay_bucket[b] = GET(st.delay_bucket[b]);
	s->delay_sum = (double)GET(st.delay_sum_us) / 1e6;
	s->delay_count = GET(st.delay_count);
	s->start_unix = GET(st.start_unix);
}

/* A label value from the configuration, escaped as the format says. */
static void add_label(struct buf *o, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			buf_addf(o, "\\%c", *v);
		else if (*v == '\n')
			buf_adds(o, "\\n");
		else
			buf_add(o, v, 1);
	}
}

/* HELP and TYPE of a family; a counter's samples are NAME_total in both
 * formats, its family is NAME_total in 0.0.4 and NAME in OpenMetrics. */
static void family(struct buf *o, bool om, const char *name, const char *type, const char *help)
{
	const char *sfx = (!om && strcmp(type, "counter") == 0) ? "_total" : "";
	buf_addf(o, "# HELP %s%s %s\n# TYPE %s%s %s\n", name, sfx, help, name, sfx, type);
}

static bool slot_used(const char *name, uint64_t v) { return name[0] || v; }

void stats_render(struct buf *o, bool om, int64_t now)
{
	struct stats_snapshot s;
	stats_snapshot(&s);

	family(o, om, "petrel_connections", "counter", "SMTP connections accepted, by listener.");
	for (int i = 0; i <= STATS_MAX_LISTENERS; i++) {
		if (!slot_used(st.listener[i], s.connections[i]))
			continue;
		buf_adds(o, "petrel_connections_total{listener=\"");
		add_label(o, s.listener[i]);
		buf_addf(o, "\"} %llu\n", (unsigned long long)s.connections[i]);
	}
	family(o, om, "petrel_messages_received", "counter", "Messages accepted and spooled, by listener.");
	for (int i = 0; i <= STATS_MAX_LISTENERS; i++) {
		if (!slot_used(st.listener[i], s.received[i]))
			continue;
		buf_adds(o, "petrel_messages_received_total{listener=\"");
		add_label(o, s.listener[i]);
		buf_addf(o, "\"} %llu\n", (unsigned long long)s.received[i]);
	}
	family(o, om, "petrel_messages_rejected", "counter", "Messages or recipients refused, by listener and reason.");
	for (int i = 0; i <= STATS_MAX_LISTENERS; i++) {
		uint64_t any = 0;
		for (int r = 0; r < STATS_REJECT_N; r++)
			any |= s.rejected[i][r];
		if (!slot_used(st.listener[i], any))
			continue;
		for (int r = 0; r < STATS_REJECT_N; r++) {
			buf_adds(o, "petrel_messages_rejected_total{listener=\"");
			add_label(o, s.listener[i]);
			buf_addf(o, "\",reason=\"%s\"} %llu\n", reject_names[r], (unsigned long long)s.rejected[i][r]);
		}
	}
	static const char *const ohelp[STATS_OUTCOME_N] = {
		[STATS_DELIVERED] = "Recipients delivered, by transport.",
		[STATS_DEFERRED] = "Delivery attempts deferred for a retry, by transport.",
		[STATS_BOUNCED] = "Recipients bounced (permanent failure), by transport.",
	};
	for (int oc = 0; oc < STATS_OUTCOME_N; oc++) {
		char fam[64];
		snprintf(fam, sizeof fam, "petrel_messages_%s", outcome_names[oc]);
		family(o, om, fam, "counter", ohelp[oc]);
		for (int i = 0; i <= STATS_MAX_TRANSPORTS; i++) {
			if (!slot_used(st.transport[i], s.outcome[i][oc]))
				continue;
			buf_addf(o, "%s_total{transport=\"", fam);
			add_label(o, s.transport[i]);
			buf_addf(o, "\"} %llu\n", (unsigned long long)s.outcome[i][oc]);
		}
	}
	family(o, om, "petrel_bytes_in", "counter", "Message bytes received (of the messages spooled).");
	buf_addf(o, "petrel_bytes_in_total %llu\n", (unsigned long long)s.bytes_in);
	family(o, om, "petrel_bytes_out", "counter", "Message bytes delivered.");
	buf_addf(o, "petrel_bytes_out_total %llu\n", (unsigned long long)s.bytes_out);
	family(o, om, "petrel_tls_handshakes", "counter", "TLS handshakes, by result.");
	buf_addf(o, "petrel_tls_handshakes_total{result=\"ok\"} %llu\n", (unsigned long long)s.tls_ok);
	buf_addf(o, "petrel_tls_handshakes_total{result=\"failed\"} %llu\n", (unsigned long long)s.tls_failed);
	family(o, om, "petrel_auth", "counter", "SMTP AUTH attempts, by result.");
	buf_addf(o, "petrel_auth_total{result=\"ok\"} %llu\n", (unsigned long long)s.auth_ok);
	buf_addf(o, "petrel_auth_total{result=\"failed\"} %llu\n", (unsigned long long)s.auth_failed);

	family(o, om, "petrel_sessions_open", "gauge", "SMTP sessions open now.");
	buf_addf(o, "petrel_sessions_open %lld\n", (long long)s.sessions_open);
	family(o, om, "petrel_queue_messages", "gauge", "Queued messages, by state.");
	for (int q = 0; q < STATS_QUEUE_N; q++)
		buf_addf(o, "petrel_queue_messages{state=\"%s\"} %lld\n", queue_names[q], (long long)s.queue[q]);
	family(o, om, "petrel_queue_oldest_age_seconds", "gauge", "Age of the oldest queued message (0: queue empty).");
	buf_addf(o, "petrel_queue_oldest_age_seconds %lld\n",
	         (long long)(s.oldest_arrival && now > s.oldest_arrival ? now - s.oldest_arrival : 0));
	family(o, om, "petrel_spool_free_bytes", "gauge", "Free bytes on the spool file system.");
	buf_addf(o, "petrel_spool_free_bytes %llu\n", (unsigned long long)s.spool_free);

	family(o, om, "petrel_delivery_delay_seconds", "histogram", "Arrival to final delivery or bounce.");
	uint64_t cum = 0;
	for (int b = 0; b < STATS_DELAY_BUCKETS; b++) {
		cum += s.delay_bucket[b];
		buf_addf(o, "petrel_delivery_delay_seconds_bucket{le=\"%g\"} %llu\n", stats_delay_bounds[b],
		         (unsigned long long)cum);
	}
	cum += s.delay_bucket[STATS_DELAY_BUCKETS];
	buf_addf(o, "petrel_delivery_delay_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
	buf_addf(o, "petrel_delivery_delay_seconds_sum %.6f\n", s.delay_sum);
	buf_addf(o, "petrel_delivery_delay_seconds_count %llu\n", (unsigned long long)cum);

	family(o, om, "petrel_start_time_seconds", "gauge", "When the daemon started (Unix time).");
	buf_addf(o, "petrel_start_time_seconds %lld\n", (long long)s.start_unix);
	if (om)
		buf_adds(o, "# EOF\n");
}
