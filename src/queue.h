/*
 * queue.h - messages in the queue and the delivery scheduler.
 *
 * A struct qmsg is a message that is on stable storage: it was committed by
 * a session (spool.c) or found at start (spool_recover.c).  The scheduler
 * hands each message with pending recipients to a worker thread, which
 * runs the transports, records each final status in the queue file, and
 * removes the file when no recipient is pending.  A deferred message is
 * retried with doubling delays until queue_lifetime, then bounced.
 *
 * Ownership: the queue owns every qmsg given to queue_add() and frees it
 * when it leaves the queue.
 */
#ifndef PETREL_QUEUE_H
#define PETREL_QUEUE_H

#include <stdbool.h>
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
	char status;         /* enum qstatus, mirrored in the file */
	off_t status_off;    /* where the status byte is in the queue file */
	char *last_error;    /* last deferral or bounce reason, for the report */
	bool expired;        /* bounced because queue_lifetime passed */
	bool reported;       /* the sender was told (or cannot be) */
};

struct qmsg {
	char qid[QID_MAX];
	char *sender;        /* "" for <> */
	time_t arrival;
	double arrival_precise;  /* for delay= in logs; not stored */
	struct qdest *dests;
	int ndests;
	int slot;            /* queue/<slot>; -1: queue/<qid> (released from hold) */
	off_t msg_off;       /* where the message starts in the file */
	uint64_t end;        /* where the file's valid bytes end */
	uint64_t size;       /* message bytes */
	int attempts;
	int crashes;         /* daemon crashes during its attempts (spool.h) */
	char attempt_mark;   /* the mark found in its queue file when read */
	bool suspect;        /* in flight at a crash: its next attempt runs alone */
	struct ev_timer retry;
	struct qmsg *next;   /* in the run list */
	int qindex;          /* in the queue's table of held messages */
	struct server *srv;
};

struct qmsg *qmsg_new(const char *qid, const char *sender, time_t arrival);
/* Add a destination; address is split into local/domain.  Returns it. */
struct qdest *qmsg_add_dest(struct qmsg *m, const char *transport, const char *address,
                            const char *orig);
/* Remove destination i (its file record is the caller's business). */
void qmsg_drop_dest(struct qmsg *m, int i);
void qmsg_free(struct qmsg **m);
/* Bounced destinations not reported yet, to a sender that is not <>
 * (after recovery none counts as reported: the file does not say). */
bool qmsg_bounce_due(const struct qmsg *m);

struct queue;
struct queue *queue_new(struct server *srv);
void queue_add(struct queue *q, struct qmsg *m);    /* takes ownership; runs soon */
int queue_active(const struct queue *q);            /* deliveries in flight */
/* SIGUSR1 (petrelctl release/flush): take in queue files the queue does
 * not hold yet (released from hold/), and retry every deferred message now. */
void queue_rescan(struct queue *q);
int queue_size(const struct queue *q);              /* messages held */
void queue_free(struct queue **q);

/* Split "local@domain" into its unquoted local part and lower-case domain.
 * Returns 0, or -1 if it is not a valid address. */
int addr_split(const char *address, char **local, char **domain)
	__attribute__((warn_unused_result));

#endif
