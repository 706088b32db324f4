/*
 * queue.h - messages in the queue and the delivery scheduler.
 *
 * A struct qmsg is a message that is on stable storage: it was committed by
 * a session (spool.c) or found at start (spool_recover.c).  The scheduler
 * (queue.c) takes each message whose pending recipients are due and, in
 * one attempt, hands the ones of blocking transports (deliver(), maildir)
 * to a worker thread, and those of asynchronous transports (start(), API
 * 1.2: smtp) to the transport on the loop, one delivery per (transport,
 * next hop).  Each final status is recorded in the queue file; the file
 * goes when no recipient is pending.  A deferred recipient is retried
 * after a backoff that doubles from retry_initial up to retry_max, with
 * random jitter, until queue_lifetime, then bounced.
 *
 * Ownership: the queue owns every qmsg given to queue_add() and frees it
 * when it leaves the queue.
 */
#ifndef PETREL_QUEUE_H
#define PETREL_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "event.h"

#define QID_MAX 24

enum qstatus { Q_PENDING = 'P', Q_DELIVERED = 'D', Q_BOUNCED = 'B' };

struct qdest {
	char *transport;     /* module name */
	char *address;       /* final recipient, "local@domain" */
	char *orig;          /* the RCPT address it came from */
	char *local;         /* unquoted local part */
	char *domain;
	char *orcpt;         /* DSN ORCPT as given (xtext), NULL when none */
	char *last_error;    /* last deferral or bounce reason, for the report */
	char *relay;         /* where the last attempt went ("mx[1.2.3.4]:25"), or NULL */
	off_t status_off;    /* where the status byte is in the queue file */
	time_t next_try;     /* not before (retry backoff); 0: due */
	unsigned short attempts;  /* deferrals so far */
	unsigned char notify;     /* DSN NOTIFY bits (PETREL_NOTIFY_*), 0: not given */
	char status;         /* enum qstatus, mirrored in the file */
	char success;        /* 0, or 'd' (delivered) / 'r' (relayed): a success report is due */
	bool expired;        /* bounced because queue_lifetime passed */
	bool reported;       /* the sender was told (or cannot be) */
	bool busy;           /* in the attempt under way */
};

/* Message facts (PETREL_DLV_* of the module API; same values). */
#define QMSG_8BITMIME 0x01
#define QMSG_SMTPUTF8 0x02
#define QMSG_RET_FULL 0x04
#define QMSG_RET_HDRS 0x08

struct qmsg {
	char qid[QID_MAX];
	char *sender;        /* "" for <> */
	char *envid;         /* DSN ENVID as given (xtext), NULL when none */
	time_t arrival;
	double arrival_precise;  /* for delay= in logs; not stored */
	struct qdest *dests;
	int ndests;
	int slot;            /* queue/<slot>; -1: queue/<qid> (released from hold) */
	off_t msg_off;       /* where the message starts in the file */
	uint64_t end;        /* where the file's valid bytes end */
	uint64_t size;       /* message bytes */
	int attempts;        /* attempts that ended with something still pending */
	int crashes;         /* daemon crashes during its attempts (spool.h) */
	char attempt_mark;   /* the mark found in its queue file when read */
	bool suspect;        /* in flight at a crash: its next attempt runs alone */
	bool solo;           /* its attempt in flight is a suspect's, alone */
	unsigned flags;      /* QMSG_* */
	bool delay_warned;   /* a delay warning was sent (kept in the seal line) */
	bool on_run;         /* in the run list */
	bool async_counted;  /* counted in the queue's asynchronous attempts */
	struct ev_timer retry;
	struct qmsg *next;   /* in the run list */
	int qindex;          /* in the queue's table of held messages */
	int inflight;        /* parts of the attempt under way (a worker job, async deliveries) */
	int fd;              /* the queue file during an attempt, else -1 */
	unsigned char ctl_listed;  /* control.c: one bit per listing under way that showed it */
	double attempt_start;
	struct server *srv;
};
struct qmsg *qmsg_new(const char *qid, const char *sender, time_t arrival);
/* Add a destination; address is split into local/domain.  Returns it. */
struct qdest *qmsg_add_dest(struct qmsg *m, const char *transport, const char *address,
                            const char *orig);
/* Remove destination i (its file record is the caller's business). */
void qmsg_drop_dest(struct qmsg *m, int i);
void qmsg_free(struct qmsg **m);
/* What d's line in a report says, or 0 for none: 'f' failed (bounced,
 * not reported yet), 'w' delayed (with warn, still pending), 'd'
 * delivered, 'r' relayed (NOTIFY=SUCCESS).  NOTIFY (RFC 3461 4.1): NEVER,
 * nothing; absent, failures and delays; else what it lists. */
char qdest_report_action(const struct qdest *d, bool warn);
/* Is a report due for m (warn: a delay warning too)?  Never to <>.
 * After recovery no bounced destination counts as reported (the file
 * does not say), and success reports are not remembered. */
bool qmsg_report_due(const struct qmsg *m, bool warn);
bool qmsg_bounce_due(const struct qmsg *m);      /* qmsg_report_due(m, false) */

struct queue;
struct queue *queue_new(struct server *srv);
void queue_add(struct queue *q, struct qmsg *m);    /* takes ownership; runs soon */
int queue_active(const struct queue *q);            /* deliveries in flight */
/* SIGUSR1 (petrelctl release/flush): take in queue files the queue does
 * not hold yet (released from hold/), and retry every deferred message now
 * (queue_transports_flush first). */
void queue_rescan(struct queue *q);
/* Tell every transport (API 1.3 flush()) that the operator wants the
 * queue retried now: dead destinations are revived. */
void queue_transports_flush(struct queue *q);
int queue_size(const struct queue *q);              /* messages held */
/* For the metrics endpoint (loop thread): messages in an attempt or due
 * now, messages waiting for a retry, and the earliest arrival of any
 * (0: the queue is empty).  A walk over the messages held. */
void queue_gauges(const struct queue *q, int64_t *active, int64_t *deferred, time_t *oldest);
/* The daemon is stopping: asynchronous transports finish or abandon what
 * they hold (their stop()), so that queue_active() drops to 0. */
void queue_stop(struct queue *q);
/* Operator actions (the control socket, control.c).  Each acts on one
 * message the queue holds, on the loop thread, and refuses (-1, *err) a
 * message whose attempt is in flight (qmsg_busy): its outcome is not
 * known yet.  hold: the file moves to hold/QID (synced) and leaves the
 * queue; delete: the file goes (synced), no report is sent; take_released:
 * queue/QID, just moved back from hold/ (spool_release), is taken in,
 * due now; flush: due
 * now; requeue: every message's backoff starts again, files put in
 * queue/ by hand are taken in, everything is due now. */
struct qmsg *queue_find(const struct queue *q, const char *qid);   /* NULL: not held */
int queue_count(const struct queue *q);                 /* = queue_size */
struct qmsg *queue_at(const struct queue *q, int i);    /* 0 <= i < queue_count */
bool qmsg_busy(const struct qmsg *m);
int queue_hold_msg(struct queue *q, struct qmsg *m, const char **err)
	__attribute__((warn_unused_result));
int queue_delete_msg(struct queue *q, struct qmsg *m, const char **err)
	__attribute__((warn_unused_result));
int queue_take_released(struct queue *q, const char *qid, const char **err)
	__attribute__((warn_unused_result));
void queue_flush_msg(struct queue *q, struct qmsg *m);
void queue_requeue(struct queue *q);

void queue_free(struct queue **q);

/* At RCPT, after routing: destinations from index 'first' on get the
 * recipient's DSN NOTIFY/ORCPT, and each 1.2 transport's check() judges
 * its own.  Returns PETREL_ROUTE_OK, or UNKNOWN / TEMPFAIL with the reply
 * (possibly empty: the default) in reply. */
int queue_check_dests(struct server *srv, struct qmsg *m, int first, unsigned notify,
                      const char *orcpt, char *reply, size_t size);

/* Split "local@domain" into its unquoted local part and lower-case domain.
 * Returns 0, or -1 if it is not a valid address. */
int addr_split(const char *address, char **local, char **domain)
	__attribute__((warn_unused_result));

#endif
