/*
 * spool.h - the durable queue directory and its group commit.
 *
 * Layout under the spool directory:
 *   incoming/QID   a message being received (deleted if incomplete)
 *   queue/QID      a committed message: envelope, then the message
 *   hold/QID       a committed message a filter put on hold (not delivered
 *                  until an operator moves it to queue/: petrelctl release)
 *   corrupt/QID    a queue file that could not be read (kept for a human)
 *   free/N         finished queue files kept for reuse: a new message takes
 *                  one over (rename + truncate) instead of a new inode.
 *                  Creating and deleting an inode per message is what costs
 *                  most on a busy ext4; reuse makes the churn renames.
 *
 * A queue file is an envelope of text lines, then the message exactly as
 * received (CRLF lines, Received: header first):
 *   PETREL-QUEUE 1
 *   Q <qid>
 *   T <arrival, unix seconds>
 *   S <sender>                         (empty for <>)
 *   D<status>\t<transport>\t<address>\t<original recipient>   (one per destination)
 *   E
 * <status> is one byte, P (pending), D (delivered), B (bounced), rewritten
 * in place as deliveries finish.
 *
 * Durability (the promise behind "250"): spool_commit() returns through
 * its callback only after the file's data is synced, it is renamed into
 * queue/, and queue/ itself is synced.  A single committer thread does
 * this for every message waiting at once: one directory sync per batch,
 * however many sessions are in it (group commit).
 */
#ifndef PETREL_SPOOL_H
#define PETREL_SPOOL_H

#include "event.h"
#include "mem.h"
#include "queue.h"

#include <stdbool.h>

struct spool;

struct spool *spool_open(const char *dir, struct ev_loop *loop, struct buf *errs);
void spool_close(struct spool **sp);   /* waits for commits in flight */

/* A new unique queue id (used at MAIL). */
void spool_new_qid(struct spool *sp, char qid[QID_MAX]);

/* Create incoming/QID exclusively; returns the fd or -1 with *err. */
int spool_create(struct spool *sp, const char *qid, const char **err);
/* A message is done: its queue file goes to free/ for reuse (or is
 * removed when enough are kept).  Any thread.  Returns 0 or -1 (errno). */
int spool_retire(struct spool *sp, const char *qid);

/* Drop an incomplete message: close fd, unlink incoming/QID. */
void spool_abort(struct spool *sp, const char *qid, int fd);

/* Serialise the envelope of m into b, recording each status byte offset. */
void spool_envelope(struct buf *b, struct qmsg *m);

typedef void spool_done_fn(void *arg, int ok, const char *err);
/* Sync and publish incoming/QID; fd is closed by the spool.  done() runs
 * on the loop thread after the message is durable (ok=1) or failed. */
void spool_commit(struct spool *sp, const char *qid, int fd, bool hold, spool_done_fn *done,
                  void *arg);

/* Replace incoming/QID by a file holding head then body (a filter changed
 * the envelope or headers).  Returns the new file's fd (read-write), or -1
 * with *err; the old file is untouched on failure. */
int spool_replace(struct spool *sp, const char *qid, const char *head, size_t head_len,
                  const char *body, size_t body_len, const char **err)
	__attribute__((warn_unused_result));
int spool_commits_pending(const struct spool *sp);

/* Paths, for the queue and recovery. */
const char *spool_dir(const struct spool *sp);
int spool_queue_path(const struct spool *sp, const char *qid, char *buf, size_t size);

/* Recovery (spool_recover.c): clean incoming/, read every queue file and
 * return the messages still pending, in arrival order. */
int spool_recover(struct spool *sp, struct qmsg ***out, int *n, struct buf *errs)
	__attribute__((warn_unused_result));
struct qmsg *spool_read_envelope(int fd, const char *qid, const char **why);

#endif
