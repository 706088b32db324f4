/*
 * bounce.h - delivery status notifications (RFC 3464) to the sender.
 *
 * When destinations of a message bounce (permanent failure, or queue
 * lifetime reached), the sender gets one report listing them, with the
 * original header section attached (the whole message for RET=FULL);
 * delay warnings and success reports (NOTIFY=SUCCESS) take the same
 * form.  Never to the null sender <>: a
 * bounce of a bounce is only logged.  The report is itself a queued
 * message from <>, written and committed through the spool like any other
 * (durable before it is scheduled), and routed by the router.
 */
#ifndef PETREL_BOUNCE_H
#define PETREL_BOUNCE_H

#include <stdbool.h>
#include <stddef.h>

#include "mem.h"
#include "queue.h"

struct server;

/* The length of the header section at the start of a message's bytes
 * (data, len; any byte may be NUL): up to and including the CRLF of its
 * last line, 0 when the message starts with the blank line, SIZE_MAX when
 * no blank line ends it within len.  Pure: no daemon needed. */
size_t bounce_header_end(const char *data, size_t len);

/* Read the header section of a queued message (for the report) into out;
 * fd is the queue file.  0, or -1 when a read failed (errno) or the file
 * ended early (errno 0); out then holds what was read. */
int bounce_capture_headers(int fd, const struct qmsg *m, struct buf *out);
/* The whole content of m from fd into out (RET=FULL); the same results. */
int bounce_capture_message(int fd, const struct qmsg *m, struct buf *out);

/* Send the sender one report about m's destinations: bounced ones not
 * reported yet (Action: failed), with warn the pending ones (delayed),
 * and those delivered or relayed with NOTIFY=SUCCESS (delivered,
 * relayed), each as its NOTIFY allows (RFC 3461: NEVER none; absent,
 * failures and delays).  'content' from bounce_capture_headers, or the
 * whole message when full (RET=FULL: attached as message/rfc822).
 * retire: m is finished, and its queue file is removed once the report
 * is durable (at once when no report is due).  Returns false when the
 * report could not be written: the file stays, and the caller tries
 * again later.  Loop thread. */
bool bounce_send(struct server *srv, struct qmsg *m, const struct buf *content, bool retire,
                 bool warn, bool full);



#endif
