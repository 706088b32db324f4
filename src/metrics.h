/*
 * metrics.h - the metrics endpoint: GET /metrics on metrics_listen, served
 * on the event loop from the counters of stats.h (Prometheus text 0.0.4,
 * or OpenMetrics 1.0 when the Accept header asks for it).
 *
 * Invariants:
 *   - Off unless metrics_listen is set; bound with the SMTP listeners,
 *     before privileges are dropped.
 *   - At most METRICS_CLIENTS scrapes at once: one more is closed at
 *     accept.  A request head is at most METRICS_HTTP_MAX bytes, read
 *     into a fixed buffer and parsed by metrics_http.c (pure); the whole
 *     exchange has METRICS_DEADLINE_MS, then the connection is closed.
 *   - Nothing blocks: the answer is written as the socket takes it, every
 *     answer says "Connection: close", and the connection is closed after
 *     it (lingering a moment, bounded, for bytes the client still sends).
 *   - The spool's free bytes and the count of held messages are taken on
 *     a timer (METRICS_SPOOL_MS), not per scrape; the queue gauges are
 *     counted at each scrape.
 *
 * Ownership: metrics_open makes srv->metrics; metrics_close frees it.
 */
#ifndef PETREL_METRICS_H
#define PETREL_METRICS_H

#include "server.h"

#define METRICS_CLIENTS 8
#define METRICS_DEADLINE_MS 5000
#define METRICS_SPOOL_MS 10000

struct metrics;

/* Name the label slots (listeners, transports) after the configuration,
 * start the spool timer, and bind metrics_listen when it is set.
 * 0, or -1 with the reason in errs. */
int metrics_open(struct server *srv, struct buf *errs) __attribute__((warn_unused_result));
void metrics_close(struct server *srv);

/* The listener's position in the configuration, its stats label slot. */
static inline int metrics_listener_slot(const struct listener *l)
{
	return l && l->srv ? (int)(l - l->srv->listeners) : -1;
}

#endif
