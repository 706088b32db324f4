/*
 * stats.h - the daemon's counters, gauges and delivery-delay histogram,
 * read by the metrics endpoint (Prometheus/OpenMetrics text) and later by
 * `petrelctl stats` (issue 9 item 3): one store, two readers.
 *
 * Invariants:
 *   - Every label set is bounded and fixed at start: listeners and
 *     transports are indexed by their position in the configuration
 *     (at most STATS_MAX_LISTENERS / STATS_MAX_TRANSPORTS; past that they
 *     count under the "other" slot), reasons are the enums below.  No label
 *     ever comes from a client-controlled string.
 *   - Counters only grow (monotonic since start); gauges are set or moved.
 *   - Every value is a relaxed C11 atomic: an update is one `lock add` on
 *     the hot path, safe from the loop thread, filter threads and delivery
 *     threads alike, and a reader sees each value whole (not a consistent
 *     snapshot across values, which neither reader needs).
 *
 * Ownership: the store is one static object owned by stats.c; names given
 * to stats_set_listener_name / stats_set_transport_name are copied.
 */
#ifndef PETREL_STATS_H
#define PETREL_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

#define STATS_MAX_LISTENERS 16
#define STATS_MAX_TRANSPORTS 16
#define STATS_NAME_MAX 48

enum stats_reject_reason {
	STATS_REJECT_RECIPIENT = 0,   /* unknown user / relay denied */
	STATS_REJECT_FILTER,          /* a filter refused the message */
	STATS_REJECT_SIZE,            /* over message_size_limit */
	STATS_REJECT_PROTOCOL,        /* bad syntax, bad sequence, bare LF... */
	STATS_REJECT_POLICY,          /* limits, rate, auth required */
	STATS_REJECT_OTHER,
	STATS_REJECT_N
};

enum stats_outcome {
	STATS_DELIVERED = 0,
	STATS_DEFERRED,
	STATS_BOUNCED,
	STATS_OUTCOME_N
};

enum stats_queue_state {
	STATS_QUEUE_ACTIVE = 0,       /* being delivered */
	STATS_QUEUE_DEFERRED,         /* waiting for a retry */
	STATS_QUEUE_HOLD,
	STATS_QUEUE_N
};

/* Delivery delay (arrival to final outcome) bucket bounds, seconds. */
#define STATS_DELAY_BUCKETS 10

/* Names for the label slots; an index past the maximum is ignored.
 * Call at start (or reload) before serving. */
void stats_set_listener_name(int idx, const char *name);
void stats_set_transport_name(int idx, const char *name);
/* The slot named NAME by stats_set_transport_name, or -1 ("other"): a
 * scan of at most STATS_MAX_TRANSPORTS names, safe from any thread once
 * the names are set. */
int stats_transport_slot(const char *name);

/* Counters (any thread).  A listener/transport index out of range counts
 * in the "other" slot. */
void stats_connection(int listener);
void stats_session_open(int delta);                 /* gauge: +1 / -1 */
void stats_received(int listener, uint64_t bytes);  /* a message accepted and spooled */
void stats_rejected(int listener, enum stats_reject_reason why);
void stats_outcome(int transport, enum stats_outcome o, uint64_t bytes, double delay_s);
void stats_bytes_in(uint64_t n);
void stats_tls_handshake(bool ok);
void stats_auth(bool ok);

/* Gauges (any thread). */
void stats_queue_set(enum stats_queue_state s, int64_t n);
void stats_queue_add(enum stats_queue_state s, int64_t delta);
void stats_oldest_queued_set(int64_t arrival_unix_s);   /* 0: queue empty */
void stats_spool_free_set(uint64_t bytes);

/* A read of everything, for petrelctl stats and tests. */
struct stats_snapshot {
	char listener[STATS_MAX_LISTENERS + 1][STATS_NAME_MAX];
	char transport[STATS_MAX_TRANSPORTS + 1][STATS_NAME_MAX];
	uint64_t connections[STATS_MAX_LISTENERS + 1];
	uint64_t received[STATS_MAX_LISTENERS + 1];
	uint64_t rejected[STATS_MAX_LISTENERS + 1][STATS_REJECT_N];
	uint64_t outcome[STATS_MAX_TRANSPORTS + 1][STATS_OUTCOME_N];
	uint64_t bytes_in, bytes_out;
	uint64_t tls_ok, tls_failed, auth_ok, auth_failed;
	int64_t sessions_open;
	int64_t queue[STATS_QUEUE_N];
	int64_t oldest_arrival;
	uint64_t spool_free;
	uint64_t delay_bucket[STATS_DELAY_BUCKETS + 1];  /* cumulative at render, not here */
	double delay_sum;
	uint64_t delay_count;
	int64_t start_unix;
};

void stats_snapshot(struct stats_snapshot *s);

/* The daemon's start, for petrel_start_time_seconds (else the first read's). */
void stats_mark_start(int64_t unix_s);

/* Zero everything (tests; a daemon never calls it). */
void stats_reset(void);

/* Append the exposition text to OUT: Prometheus text format 0.0.4, or
 * OpenMetrics 1.0 (counters named *_total, ends with "# EOF") when
 * openmetrics.  now_unix: the time the gauges of age are computed for. */
void stats_render(struct buf *out, bool openmetrics, int64_t now_unix);

extern const double stats_delay_bounds[STATS_DELAY_BUCKETS];
const char *stats_reject_reason_name(enum stats_reject_reason r);
/* The reason a refusal counts under, from the command refused and the
 * reply sent: any refused RCPT is RECIPIENT (unknown user, relay denied,
 * a recipient check); else by the reply's enhanced code: X.3.4 SIZE,
 * X.5.x PROTOCOL, X.7.x POLICY (without one: 552 SIZE, 50x PROTOCOL),
 * anything else OTHER.  FILTER is never guessed: the caller that runs the
 * message filters says it. */
enum stats_reject_reason stats_reject_reason_of(const char *cmd, const char *reply);

#endif
