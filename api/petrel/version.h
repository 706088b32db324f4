/*
 * petrel/version.h - the module API version, its rule and its history.
 *
 * THE RULE
 *   PETREL_API_MAJOR moves when a built module could misbehave with the
 *   new daemon: a field of a public struct removed, moved or retyped, a
 *   host function's meaning or signature changed, a verdict renumbered.
 *   The daemon refuses a module whose major differs from its own, with a
 *   message naming both numbers.
 *
 *   PETREL_API_MINOR moves when something is only added: a host function
 *   appended at the END of struct petrel_host, a field appended at the END
 *   of an ops struct, a new verdict or flag value.  A module built against
 *   an older minor loads into a newer daemon; the daemon never reads an
 *   ops field newer than the module's api_minor.  A module that wants a
 *   newer host function checks host->api_minor (or PETREL_HOST_HAS) first.
 *
 *   Objects the host hands out (session, transaction, address, delivery,
 *   configuration block) are opaque: modules use accessors only, so the
 *   core may change its structs freely.
 *
 * HISTORY (newest first; every bump gets a dated line)
 *   1.3  2026-12-03  transports: flush(), called when an operator asks
 *                    for the queue to be retried now; result
 *                    PETREL_DELIVERED_FINAL (final delivery by an
 *                    asynchronous transport).
 *   1.2  2026-12-02  transports: check() at RCPT time; asynchronous
 *                    start()/stop() on the loop with every recipient of
 *                    one message for one next hop; host: delivery_rcpt_*
 *                    (count, address, ORCPT, NOTIFY, result per
 *                    recipient), delivery_relay, delivery_done,
 *                    delivery_rewind, delivery_size, delivery_flags,
 *                    delivery_envid, delivery_nexthop,
 *                    delivery_route_option, global_string,
 *                    is_own_address; result PETREL_RELAYED.
 *   1.1  2026-11-29  host->work_submit: blocking work of a filter on the
 *                    daemon's filter thread pool, done() on the loop.
 *   1.0  2026-11-29  first API: descriptor, settings table; stage/filter
 *                    hooks connect, helo, auth, mail, rcpt, headers, part,
 *                    eom, queued, txn_end, session_end; verdicts continue,
 *                    accept, reject, tempfail, discard, hold, pending;
 *                    router and transport (blocking deliver on a worker
 *                    thread); host: log, config getters and errors,
 *                    session/txn/address accessors, replies, routing,
 *                    delivery accessors, per-module session and txn slots,
 *                    suspend/resume, timers, fd watches, header read and
 *                    edit, recipient add/remove, MIME part accessors
 *                    (part_charset last).
 */
#ifndef PETREL_VERSION_H
#define PETREL_VERSION_H

#define PETREL_API_MAJOR 1
#define PETREL_API_MINOR 3

#endif
