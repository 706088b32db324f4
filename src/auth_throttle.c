/*
 * auth_throttle.c - per-address AUTH failures and checks in flight (see
 * auth_throttle.h).
 *
 * A chained hash table (seeded at creation, so bucket collisions cannot be
 * planned from outside) over at most max_entries entries, which are also
 * on a list from the most to the least recently seen.  Every operation is
 * O(1) on average: a lookup, a move to the front, and at most a few
 * entries looked at from the old end (expired ones dropped, one evicted
 * when the table is full).
 */
#include "auth_throttle.h"
#include "mem.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define TAIL_LOOK 8     /* entries looked at from the old end per operation */

struct entry {
	struct auth_client_key key;
	int failures;
	int inflight;
	uint64_t window_start;      /* ms of the first failure of the window */
	struct entry *hnext;        /* bucket chain */
	struct entry *newer, *older;
};

struct auth_throttle {
	struct entry **buckets;
	size_t mask;
	uint64_t seed;
	int n, max;
	struct entry *newest, *oldest;
};

void auth_client_key(const struct sockaddr_storage *ss, struct auth_client_key *k)
{
	memset(k, 0, sizeof *k);
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		k->b[0] = 4;
		memcpy(k->b + 1, &in->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		const unsigned char *a = in6->sin6_addr.s6_addr;
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (!memcmp(a, mapped, sizeof mapped)) {
			k->b[0] = 4;
			memcpy(k->b + 1, a + 12, 4);
		} else {
			k->b[0] = 6;
			memcpy(k->b + 1, a, 8);      /* the /64 */
		}
	}
}

struct auth_throttle *auth_throttle_new(int max_entries)
{
	struct auth_throttle *t = xcalloc(1, sizeof *t);
	size_t nb = 64;
	while ((int)nb < max_entries && nb < ((size_t)1 << 24))
		nb *= 2;
	t->buckets = xcalloc(nb, sizeof *t->buckets);
	t->mask = nb - 1;
	t->max = max_entries > 0 ? max_entries : 1;
	if (getrandom(&t->seed, sizeof t->seed, GRND_NONBLOCK) != sizeof t->seed) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		t->seed = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)ts.tv_sec ^ (uintptr_t)t;
	}
	return t;
}

void auth_throttle_free(struct auth_throttle **tp)
{
	struct auth_throttle *t = *tp;
	if (!t)
		return;
	for (struct entry *e = t->newest, *next; e; e = next) {
		next = e->older;
		free(e);
	}
	free(t->buckets);
	xfree(tp);
}

int auth_throttle_count(const struct auth_throttle *t)
{
	return t ? t->n : 0;
}

static size_t bucket_of(const struct auth_throttle *t, const struct auth_client_key *k)
{
	uint64_t h = t->seed ^ 0xcbf29ce484222325ULL;      /* FNV-1a, seeded */
	for (size_t i = 0; i < sizeof k->b; i++) {
		h ^= k->b[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 29;
	return (size_t)h & t->mask;
}

static void list_unlink(struct auth_throttle *t, struct entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		t->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		t->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void list_push(struct auth_throttle *t, struct entry *e)
{
	e->newer = NULL;
	e->older = t->newest;
	if (t->newest)
		t->newest->newer = e;
	t->newest = e;
	if (!t->oldest)
		t->oldest = e;
}

static void entry_remove(struct auth_throttle *t, struct entry *e)
{
	struct entry **pp = &t->buckets[bucket_of(t, &e->key)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	list_unlink(t, e);
	t->n--;
	free(e);
}

static bool expired(const struct entry *e, const struct auth_throttle_limits *lim, uint64_t now)
{
	return e->inflight == 0 && (e->failures == 0 || now - e->window_start >= lim->window_ms);
}

/* Forget entries at the old end that hold nothing any more. */
static void prune(struct auth_throttle *t, const struct auth_throttle_limits *lim, uint64_t now)
{
	for (int i = 0; i < TAIL_LOOK && t->oldest && expired(t->oldest, lim, now); i++)
		entry_remove(t, t->oldest);
}

static struct entry *lookup(struct auth_throttle *t, const struct auth_client_key *k)
{
	for (struct entry *e = t->buckets[bucket_of(t, k)]; e; e = e->hnext)
		if (!memcmp(e->key.b, k->b, sizeof k->b))
			return e;
	return NULL;
}

/* The address's entry, made (maybe in place of the oldest idle one);
 * NULL when the table is full of addresses with checks in flight. */
static struct entry *get(struct auth_throttle *t, const struct auth_client_key *k)
{
	struct entry *e = lookup(t, k);
	if (e) {
		list_unlink(t, e);
		list_push(t, e);
		return e;
	}
	if (t->n >= t->max) {
		struct entry *v = t->oldest;
		for (int i = 0; v && v->inflight && i < TAIL_LOOK; i++)
			v = v->newer;
		if (!v || v->inflight)
			return NULL;
		entry_remove(t, v);
	}
	e = xcalloc(1, sizeof *e);
	e->key = *k;
	size_t b = bucket_of(t, k);
	e->hnext = t->buckets[b];
	t->buckets[b] = e;
	list_push(t, e);
	t->n++;
	return e;
}

static enum auth_throttle_verdict judge(const struct entry *e, const struct auth_throttle_limits *lim,
                                        uint64_t now)
{
	if (!e)
		return AUTH_THROTTLE_OK;
	if (lim->failures > 0 && e->failures >= lim->failures && now - e->window_start < lim->window_ms)
		return AUTH_THROTTLE_FAILURES;
	if (e->inflight >= lim->concurrency)
		return AUTH_THROTTLE_BUSY;
	return AUTH_THROTTLE_OK;
}

enum auth_throttle_verdict auth_throttle_check(struct auth_throttle *t, const struct auth_client_key *k,
                                               const struct auth_throttle_limits *lim, uint64_t now_ms)
{
	return judge(lookup(t, k), lim, now_ms);
}

enum auth_throttle_verdict auth_throttle_begin(struct auth_throttle *t, const struct auth_client_key *k,
                                               const struct auth_throttle_limits *lim, uint64_t now_ms)
{
	prune(t, lim, now_ms);
	enum auth_throttle_verdict v = judge(lookup(t, k), lim, now_ms);
	if (v != AUTH_THROTTLE_OK)
		return v;
	struct entry *e = get(t, k);
	if (!e)
		return AUTH_THROTTLE_BUSY;    /* every remembered address is being checked */
	e->inflight++;
	return AUTH_THROTTLE_OK;
}

void auth_throttle_end(struct auth_throttle *t, const struct auth_client_key *k, bool wrong,
                       const struct auth_throttle_limits *lim, uint64_t now_ms)
{
	struct entry *e = lookup(t, k);
	if (!e)
		return;        /* cannot happen: an entry with a check in flight stays */
	if (e->inflight > 0)
		e->inflight--;
	if (wrong) {
		if (!e->failures || now_ms - e->window_start >= lim->window_ms) {
			e->window_start = now_ms;
			e->failures = 0;
		}
		e->failures++;
	}
	list_unlink(t, e);
	list_push(t, e);
	if (expired(e, lim, now_ms))
		entry_remove(t, e);      /* a right password and nothing held: nothing to remember */
}

int auth_throttle_failures(struct auth_throttle *t, const struct auth_client_key *k,
                           const struct auth_throttle_limits *lim, uint64_t now_ms)
{
	const struct entry *e = lookup(t, k);
	if (!e || !e->failures || now_ms - e->window_start >= lim->window_ms)
		return 0;
	return e->failures;
}
