/*
 * test-stats.c - the counter store of src/stats.c: counts from several
 * threads at once add up exactly (the store is race-free), out-of-range
 * label slots fall in "other", the delay histogram is cumulative with
 * +Inf = count, and the exposition text has the lines a scraper expects
 * in both formats (OpenMetrics ends with "# EOF", Prometheus does not).
 */
#include "stats.h"
#include "mem.h"
#include "tap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define PER 100000

static void *hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < PER; i++) {
		stats_received(0, 10);
		stats_bytes_in(10);
		stats_outcome(1, STATS_DELIVERED, 10, 0.02);
	}
	return NULL;
}

static bool has(const struct buf *b, const char *line)
{
	char *s = xstrndup(b->data, b->len);
	bool r = strstr(s, line) != NULL;
	free(s);
	return r;
}

int main(void)
{
	stats_reset();
	stats_set_listener_name(0, "mx");
	stats_set_transport_name(1, "maildir");
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, hammer, NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);

	struct stats_snapshot s;
	stats_snapshot(&s);
	tap_ok(s.received[0] == THREADS * PER, "received from %d threads adds up (%llu)", THREADS,
	       (unsigned long long)s.received[0]);
	tap_ok(s.outcome[1][STATS_DELIVERED] == THREADS * PER, "delivered adds up");
	tap_ok(s.bytes_in == 10ull * THREADS * PER && s.bytes_out == 10ull * THREADS * PER, "bytes add up");

	stats_rejected(99, STATS_REJECT_FILTER);
	stats_rejected(-1, (enum stats_reject_reason)1000);
	stats_connection(0);
	stats_snapshot(&s);
	tap_ok(s.rejected[STATS_MAX_LISTENERS][STATS_REJECT_FILTER] == 1, "listener past the table counts in other");
	tap_ok(s.rejected[STATS_MAX_LISTENERS][STATS_REJECT_OTHER] == 1, "unknown reason counts as other");
	tap_ok(strcmp(s.listener[STATS_MAX_LISTENERS], "other") == 0, "the last slot is named other");

	stats_outcome(1, STATS_BOUNCED, 0, 7200);
	stats_outcome(1, STATS_DEFERRED, 0, 5);
	stats_session_open(1);
	stats_session_open(1);
	stats_session_open(-1);
	stats_queue_set(STATS_QUEUE_DEFERRED, 3);
	stats_oldest_queued_set(1000);

	struct buf b = { 0 };
	stats_render(&b, false, 1060);
	tap_ok(has(&b, "# TYPE petrel_messages_received_total counter\n"), "prometheus: counter family named _total");
	tap_ok(has(&b, "petrel_messages_received_total{listener=\"mx\"} 400000\n"), "received by listener");
	tap_ok(has(&b, "petrel_messages_delivered_total{transport=\"maildir\"} 400000\n"), "delivered by transport");
	tap_ok(has(&b, "petrel_messages_bounced_total{transport=\"maildir\"} 1\n"), "bounced by transport");
	tap_ok(has(&b, "petrel_messages_deferred_total{transport=\"maildir\"} 1\n"), "deferred by transport");
	tap_ok(has(&b, "petrel_messages_rejected_total{listener=\"other\",reason=\"filter\"} 1\n"), "rejected by reason");
	tap_ok(has(&b, "petrel_connections_total{listener=\"mx\"} 1\n"), "connections");
	tap_ok(has(&b, "petrel_sessions_open 1\n"), "sessions gauge");
	tap_ok(has(&b, "petrel_queue_messages{state=\"deferred\"} 3\n"), "queue gauge by state");
	tap_ok(has(&b, "petrel_queue_oldest_age_seconds 60\n"), "oldest age");
	tap_ok(has(&b, "petrel_delivery_delay_seconds_bucket{le=\"0.05\"} 400000\n"), "histogram bucket cumulative");
	tap_ok(has(&b, "petrel_delivery_delay_seconds_bucket{le=\"3600\"} 400000\n"), "7200 s not under 3600");
	tap_ok(has(&b, "petrel_delivery_delay_seconds_bucket{le=\"+Inf\"} 400001\n"), "+Inf counts every final outcome");
	tap_ok(has(&b, "petrel_delivery_delay_seconds_count 400001\n"), "count = +Inf");
	tap_ok(!has(&b, "# EOF"), "prometheus text has no # EOF");
	tap_ok(!has(&b, "listener=\"1\""), "unnamed, unused slots are not shown");

	buf_reset(&b);
	stats_render(&b, true, 1060);
	tap_ok(has(&b, "# TYPE petrel_messages_received counter\n"), "openmetrics: family without _total");
	tap_ok(b.len > 6 && memcmp(b.data + b.len - 6, "# EOF\n", 6) == 0, "openmetrics ends with # EOF");
	buf_free(&b);

	static const struct { const char *cmd, *reply; enum stats_reject_reason want; } why[] = {
		{ "RCPT", "550 5.1.1 <x@y>: Recipient address rejected: User unknown", STATS_REJECT_RECIPIENT },
		{ "RCPT", "554 5.7.1 <x@y>: Relay access denied", STATS_REJECT_RECIPIENT },
		{ "RCPT", "451 4.3.0 <x@y>: Temporary lookup failure", STATS_REJECT_RECIPIENT },
		{ "MAIL", "552 5.3.4 Message size exceeds fixed limit", STATS_REJECT_SIZE },
		{ "DATA", "552 5.3.4 Error: too many message header fields", STATS_REJECT_SIZE },
		{ "DATA", "554 5.5.2 Error: bare <CR> or <LF> in message content", STATS_REJECT_PROTOCOL },
		{ "MAIL", "555 5.5.4 BODY=BINARYMIME is not supported", STATS_REJECT_PROTOCOL },
		{ "CONNECT", "554 5.7.1 Service refused", STATS_REJECT_POLICY },
		{ "MAIL", "451 4.7.1 Sender address temporarily rejected, try again later", STATS_REJECT_POLICY },
		{ "DATA", "452 4.3.1 Error: insufficient system storage", STATS_REJECT_OTHER },
		{ "DATA", "554 5.4.6 Error: too many hops (mail loop?)", STATS_REJECT_OTHER },
		{ "MAIL", "552 Too big", STATS_REJECT_SIZE },
		{ "HELO", "501 bad", STATS_REJECT_PROTOCOL },
		{ "HELO", "", STATS_REJECT_OTHER },
		{ "HELO", "55", STATS_REJECT_OTHER },
		{ NULL, NULL, STATS_REJECT_OTHER },
	};
	for (size_t i = 0; i < sizeof why / sizeof why[0]; i++)
		tap_ok(stats_reject_reason_of(why[i].cmd, why[i].reply) == why[i].want, "reason of %s %s: %s",
		       why[i].cmd ? why[i].cmd : "(null)", why[i].reply ? why[i].reply : "(null)",
		       stats_reject_reason_name(why[i].want));
	stats_set_transport_name(0, "smtp");
	tap_ok(stats_transport_slot("smtp") == 0 && stats_transport_slot("maildir") == 1 &&
	       stats_transport_slot("lmtp") == -1 && stats_transport_slot(NULL) == -1, "transport slot by name");
	return tap_done();
}
