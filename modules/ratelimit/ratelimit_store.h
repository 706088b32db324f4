/*
 * ratelimit_store.h - the ratelimit module's message counters.
 *
 * A store maps a key ("s:alice@example.org", "c:192.0.2.1", "u:bob") to
 * two buckets, one per window (hour, day).  Each bucket keeps the count of
 * the current calendar window (aligned on multiples of its length, UTC)
 * and of the one before it; the rate over the last window length is
 * estimated by the two-bucket sliding approximation
 *
 *     estimate = ceil(prev * (W - elapsed) / W) + cur + inflight
 *
 * rounded up, so a sender who used up the limit just before a window
 * boundary is not let through just after it.  'inflight' counts the open
 * transactions that passed the check at MAIL and are not queued yet, so
 * concurrent sessions cannot overshoot a limit; it is never persisted.
 *
 * Persistence is a snapshot PATH written whole (temp file + rename, off
 * the event loop, or at shutdown) and a journal PATH.log the loop appends
 * the entries that changed to, once a second at most: the loop's cost is
 * the number of changed entries, not the size of the table.  A journal
 * grown large is renamed PATH.log.old and merged into a new snapshot by
 * rl_store_compact() on a worker thread.  Loading reads the snapshot,
 * then PATH.log.old, then PATH.log, and merges each line into what is
 * there by taking, per window, the later start and the larger counts:
 * counters only grow within a window, so the merge gives the newest state
 * whatever the order and however often a line is read again (a crash at
 * any point between the files' renames and unlinks loses nothing).  The
 * journal is not fsynced on the loop; after a power loss the counters may
 * be somewhat behind, which a rate limit tolerates.
 *
 * The table's hash is SipHash-1-3 keyed from getrandom() per store, so a
 * client cannot choose addresses that fall into one chain.
 *
 * Ownership: the store owns its entries; an entry pointer stays valid while
 * the caller holds it (rl_store_hold) and until rl_store_free().
 */
#ifndef RATELIMIT_STORE_H
#define RATELIMIT_STORE_H

#include <stddef.h>
#include <time.h>

enum rl_window { RL_HOUR = 0, RL_DAY = 1, RL_NWINDOWS = 2 };

struct rl_bucket {
	long long start;          /* window start, seconds since the epoch */
	unsigned long cur;        /* messages counted in this window */
	unsigned long prev;       /* ... and in the window before it */
};

struct rl_entry {
	struct rl_entry *next;
	struct rl_entry *dnext, **dprev;   /* on the store's dirty list when dprev */
	struct rl_bucket b[RL_NWINDOWS];
	unsigned long inflight;   /* held by open transactions; not persisted */
	char key[];
};

struct rl_store {
	struct rl_entry **tab;
	size_t size;              /* buckets in tab, a power of two */
	size_t count;             /* entries */
	unsigned long long k0, k1; /* hash key, from getrandom() at first use */
	int keyed;
	struct rl_entry *dirty;   /* changed since the last rl_store_journal() */
	size_t sweep;             /* next bucket rl_store_sweep() looks at */
};

/* Window length in seconds. */
long long rl_window_seconds(enum rl_window w);

/* The entry for key, created empty if 'create' (NULL if absent, or out of
 * memory). */
struct rl_entry *rl_store_get(struct rl_store *st, const char *key, int create);

/* The estimated number of messages over the last window (see above). */
unsigned long rl_entry_estimate(struct rl_entry *e, enum rl_window w, time_t now);

/* Count one queued message in every window of e. */
void rl_entry_count(struct rl_entry *e, time_t now);

/* Take or drop one in-flight hold on e.  Dropping the last hold of an
 * entry with nothing counted removes it from the store (*ep is cleared). */
void rl_store_hold(struct rl_entry *e);
void rl_store_release(struct rl_store *st, struct rl_entry **ep, time_t now);

/* e changed: rl_store_journal() writes it. */
void rl_store_mark(struct rl_store *st, struct rl_entry *e);

/* Drop expired entries from at most n buckets, going round the table
 * (a bounded share of the work at each call). */
void rl_store_sweep(struct rl_store *st, time_t now, size_t n);

/* Append the changed entries to the journal fd (one write), and forget
 * them.  Returns the bytes written (0 when nothing changed) or -1 with
 * the reason in errbuf (they stay marked, for the next call). */
long rl_store_journal(struct rl_store *st, int fd, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* The journal's first line (written by the caller into an empty file). */
extern const char rl_journal_magic[];

/* Merge the snapshot at path and the journal path.log.old into a new
 * snapshot (synced), then remove path.log.old.  Works on the files only:
 * safe on a worker thread while the loop appends to path.log.  Returns 0
 * or -1 with the reason in errbuf. */
int rl_store_compact(const char *path, time_t now, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/* Load path into an empty store.  A missing file is an empty store (0).
 * A file that cannot be read or parsed returns -1 with *err set (static
 * text plus line number, in errbuf) and leaves the store empty.  Then the
 * journals path.log.old and path.log are merged in (see above); a bad
 * line in one ends that journal, and is reported the same way (-1) with
 * what was read kept. */
int rl_store_load(struct rl_store *st, const char *path, time_t now,
                  char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Write the store to path (path.tmp, synced, then renamed), then remove
 * the journals: the snapshot holds everything.  Entries with nothing
 * counted in either window and no hold are dropped first.  Blocks: at
 * shutdown or on a worker.  Returns 0, or -1 with the reason in errbuf. */
int rl_store_save(struct rl_store *st, const char *path, time_t now,
                  char *errbuf, size_t errlen) __attribute__((warn_unused_result));

/* Free every entry; the store is empty and reusable afterwards. */
void rl_store_free(struct rl_store *st);

#endif
