/*
 * spool.h - the durable queue and its group commit.
 *
 * Layout under the spool directory:
 *   queue/N      a queue slot: a file reused for message after message
 *                (N is a number, not a queue id; the id is inside)
 *   queue/QID    a message released from hold/ by an operator
 *   hold/QID     a message a filter or an operator (petrelctl hold) put
 *                on hold: not delivered until released (petrelctl
 *                release moves it to queue/QID); recovery reads queue/
 *                only, so it stays held across restarts
 *   control      the control socket (control.c; control_socket)
 *   corrupt/...  a queue file that failed its checks (kept for a human)
 *
 * Why slots: a message costs one sync, of its own data.  A new file per
 * message costs an inode, directory entries and a directory sync, i.e. a
 * journal commit, on top of the data; a slot that is overwritten in place
 * (same blocks, a size that does not change much) needs none of that, and
 * an fdatasync of it is the data and a cache flush.  The price is that a
 * slot cannot be trusted for being there: it is trusted for its seal.
 *
 * A queue file is a fixed 64-byte seal line, an envelope of text lines,
 * then the message exactly as received (CRLF lines, Received: first):
 *   PETREL-QUEUE 3 <state> <length, 16 hex> <crc32c, 8 hex> <retry>  (padded, \n)
 *   Q <qid>
 *   T <arrival, unix seconds>
 *   S <sender>                         (empty for <>)
 *   M <flags, hex>\t<ENVID, xtext>     (only with BODY=8BITMIME, SMTPUTF8, RET, ENVID)
 *   D<status>\t<transport>\t<address>\t<original recipient>   (one per destination)
 *   N <NOTIFY bits, hex>\t<ORCPT, xtext>   (after its D line, only when given)
 *   E
 * In version 3 a field (sender, transport, address, original) is written
 * with a backslash as "\\" and each control byte (TAB, CR, LF, ...) as
 * "\xHH", so whatever bytes it holds, reading it gives it back
 * (tests/fuzz/fuzz_spool_envelope.c checks the round trip).  Version 2
 * wrote fields as they were; such files are still read, as they are.
 * <state> is W (being written, never acknowledged), Q (sealed: committed)
 * or F (free: delivered, the slot may be reused).  <length> is the file's
 * valid length: a reused slot may hold old bytes past it.  The CRC covers
 * the bytes after the seal line up to <length>, with every status byte
 * counted as P.  <status> is one byte, P (pending), D (delivered), B
 * (bounced), rewritten in place as deliveries finish.
 *
 * Delivery attempts (the crash-loop guard): two bytes of the seal line's
 * padding after <retry>, which the CRC does not cover and older readers ignore, say what
 * happened to the last attempts:
 *   offset SPOOL_ATTEMPT_OFF: ' ' none in progress, 'A' an attempt in
 *     progress beside others, 'S' an attempt in progress alone (nothing
 *     else was delivering), 's' suspect: it was in flight when petreld
 *     died, its next attempt runs alone;
 *   offset SPOOL_CRASHES_OFF: ' ' or '1'..'9', the crashes seen with an
 *     attempt of this message in progress.
 * A worker marks 'A' or 'S' before it calls the transports and ' ' after
 * (spool_attempt_mark): a pwrite each, never synced, because what they
 * guard against is a crash of the process, which keeps the page cache
 * (after a power cut a lost mark costs one more crash, never mail).  At
 * start, recovery counts a crash for a mark it finds; a message found
 * marked 'S' with SPOOL_CRASH_LIMIT crashes is moved to hold/ with an
 * error log line, and the rest of the mail goes on.  A fresh seal line
 * (a new message in a reused slot) has blank padding: no mark survives.
 *
 * <retry> is "<attempts, 4 hex> <next try, unix seconds, 8 hex> <W|->"
 * (W: the delay warning went out), rewritten in place after each attempt
 * without a sync (a crash loses at most the last update: the message is
 * tried a little early, or warned about twice).  It is outside the CRC.
 *
 * Notes (the last error of each pending destination, for petrelctl
 * queue/show after a restart and for held messages): written past the
 * file's valid <length>, where a reader of the message never looks, by
 * spool_write_notes after each attempt that left destinations pending,
 * with a pwrite and no sync (they are advice, not mail):
 *   PETREL-NOTES <qid>\n
 *   <destination index, hex>\t<last error, escaped as fields are>\n   (each)
 *   END <crc32c of the lines above, 8 hex>\n
 * spool_read_envelope reads them back when the qid and the CRC match; a
 * slot reused by another message, a torn write or old bytes past a
 * shorter message never match.  Each error is cut at SPOOL_NOTE_MAX bytes.
 *
 * Versions: 3 escapes the fields (above), adds M and N lines (DSN,
 * RFC 3461), <retry> and the attempt marks.  A
 * version 2 file (no M/N lines; the padding where <retry> goes) is still
 * read, so a queue survives the upgrade; this daemon writes only version
 * 3, which an older daemon refuses (moved to corrupt/): empty the queue
 * before a downgrade.
 *
 * Durability (the promise behind "250"): spool_commit() calls back only
 * after the sealed file is synced (and, for a slot file made since the
 * last time, queue/ too).  Commits waiting at the same moment are synced
 * together (group commit).  After a crash, recovery trusts a slot only if
 * its seal says Q and its length and CRC match: a slot caught half
 * written is free again, and one whose seal does not match is moved to
 * corrupt/ with a log line.
 */
#ifndef PETREL_SPOOL_H
#define PETREL_SPOOL_H

#include "event.h"
#include "mem.h"
#include "queue.h"

#include <stdbool.h>
#include <stdint.h>

#define SPOOL_HDR_LEN 64
#define SPOOL_VERSION 3       /* written; 2 is read too */
#define SPOOL_STATE_OFF 15    /* the state byte in the seal line */
#define SPOOL_RETRY_OFF 43    /* <retry> in the seal line */
#define SPOOL_RETRY_LEN 15
#define SPOOL_ATTEMPT_OFF 60  /* the delivery attempt mark, in the padding past <retry> */
#define SPOOL_CRASHES_OFF 61  /* crashes during an attempt: ' ', '1'..'9' */
#define SPOOL_CRASH_LIMIT 2   /* crashes (the last one alone) before hold */

/* Marks at SPOOL_ATTEMPT_OFF. */
#define SPOOL_ATTEMPT_NONE ' '
#define SPOOL_ATTEMPT_SHARED 'A'
#define SPOOL_ATTEMPT_SOLO 'S'
#define SPOOL_ATTEMPT_SUSPECT 's'

struct spool;

/* mkdir -p: the parents 0755, the directory itself 0700.  0 or -1 (errno). */
int spool_mkdirs(const char *dir) __attribute__((warn_unused_result));
struct spool *spool_open(const char *dir, struct ev_loop *loop, struct buf *errs);
void spool_close(struct spool **sp);   /* waits for commits in flight */

/* A new unique queue id (used at MAIL). */
void spool_new_qid(struct spool *sp, char qid[QID_MAX]);

/* Take a slot for m (sets m->slot); returns its fd, at offset 0, or -1
 * with *err.  The caller writes spool_envelope() then the message. */
int spool_create(struct spool *sp, struct qmsg *m, const char **err);
/* Drop an incomplete message: its bytes go, its slot is free again.
 * Closes fd (when >= 0). */
void spool_abort(struct spool *sp, int slot, int fd);
/* A message is done: mark its slot free (or remove a file released from
 * hold).  fd is the open queue file or -1.  Any thread.  0 or -1. */
int spool_retire(struct spool *sp, const struct qmsg *m, int fd);

/* Record that a delivery attempt of m begins (SPOOL_ATTEMPT_SHARED or
 * _SOLO) or ended (SPOOL_ATTEMPT_NONE) in its open queue file fd.  Any
 * thread; no sync (see above).  0, or -1 with errno. */
int spool_attempt_mark(int fd, char mark) __attribute__((warn_unused_result));
/* Move m's queue file to hold/QID (both directories synced; a failed
 * sync is logged); m->slot becomes -1.  0, or -1 with *err when the file
 * was not moved. */
int spool_hold(struct spool *sp, struct qmsg *m, const char **err)
	__attribute__((warn_unused_result));
/* Operator actions (control.c, petrelctl): move hold/QID back to
 * queue/QID (release), remove hold/QID (delete), open hold/QID to read
 * it; the directories are synced before 0 is returned (a failed sync is
 * logged).  qid must be a plain name (the caller checks it).  0 or -1
 * with *err; spool_open_held returns an fd or -1 with errno. */
int spool_release(struct spool *sp, const char *qid, const char **err)
	__attribute__((warn_unused_result));
int spool_delete_held(struct spool *sp, const char *qid, const char **err)
	__attribute__((warn_unused_result));
int spool_open_held(const struct spool *sp, const char *qid);
/* fsync queue/ (after an operator removed a file released from hold). */
int spool_sync_queue_dir(const struct spool *sp);
/* Record the retry state of an open queue file (see <retry>); no sync. */
int spool_write_retry(int fd, int attempts, time_t next_try, bool warned)
	__attribute__((warn_unused_result));

/* Record the last error of m's pending destinations past its valid
 * bytes (see Notes above); no sync.  0, or -1 with errno. */
int spool_write_notes(int fd, const struct qmsg *m) __attribute__((warn_unused_result));
#define SPOOL_NOTE_MAX 400
/* The notes of m read from fd into its destinations' last_error (those
 * found; nothing when there are none or they do not match). */
void spool_read_notes(int fd, struct qmsg *m);

/* Serialise the envelope of m (unsealed seal line first) into b, recording
 * each status byte offset and the message offset. */
void spool_envelope(struct buf *b, struct qmsg *m);

typedef void spool_done_fn(void *arg, int ok, int errnum, const char *err);
/* Seal and sync m's file, whose valid bytes end at fd's offset; the spool
 * closes fd.  hold: it goes to hold/ instead.  done() runs on the loop
 * thread after the message is durable (ok=1) or failed (errnum, err). */
void spool_commit(struct spool *sp, struct qmsg *m, int fd, bool hold, spool_done_fn *done,
                  void *arg);

/* Write head then body to a new slot for m (a filter changed the envelope
 * or headers).  Returns the new fd (read-write, offset at the end) and
 * sets *old_slot to the slot the caller must spool_abort(); or -1 with
 * *err, m unchanged. */
int spool_replace(struct spool *sp, struct qmsg *m, int *old_slot, const char *head,
                  size_t head_len, const char *body, size_t body_len, const char **err)
	__attribute__((warn_unused_result));
int spool_commits_pending(const struct spool *sp);
/* Bytes free for unprivileged writers on the spool's filesystem. */
uint64_t spool_free_bytes(const struct spool *sp);

/* Paths, for the queue and recovery. */
const char *spool_dir(const struct spool *sp);
int spool_path(const struct spool *sp, const struct qmsg *m, char *buf, size_t size);

/* The checksum of a queue file's content (the bytes after the seal line),
 * fed in pieces: status bytes of D lines count as P. */
struct spool_crc {
	uint32_t crc;
	int st;
};
void spool_crc_feed(struct spool_crc *c, const char *p, size_t n);
/* Fill in the seal line at the top of a whole queue file in memory. */
void spool_seal_buf(char *file, size_t len, char state);

/* Recovery (spool_recover.c): read every queue file, free what is not
 * sealed, and return the messages still pending, in arrival order.  The
 * attempt marks are applied here (see above): a message in flight at a
 * crash comes back with m->suspect set, one that crashed the daemon alone
 * too often goes to hold/ and is not returned. */
int spool_recover(struct spool *sp, struct qmsg ***out, int *n, struct buf *errs)
	__attribute__((warn_unused_result));
/* Read and check a sealed queue file; qid: the id it must hold, or NULL.
 * Sets m->attempt_mark and m->crashes from the seal line. */
struct qmsg *spool_read_envelope(int fd, const char *qid, const char **why);
/* The state byte of a queue file: 'W', 'Q', 'F'; 0 for an empty file;
 * -1 when the seal line is not one. */
int spool_read_state(int fd);

/* Is this file name in queue/ a slot number (sets *slot)? */
bool spool_slot_name(const char *name, int *slot);
/* spool.c, for recovery: slots found at start. */
void spool_slot_free(struct spool *sp, int slot);
void spool_slot_seen(struct spool *sp, int slot);

#endif
