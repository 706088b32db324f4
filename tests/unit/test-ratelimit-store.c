/*
 * test-ratelimit-store.c - the ratelimit table's hash is keyed (issue 7,
 * item 9): a client cannot choose sender addresses that all fall into one
 * chain of modules/ratelimit/ratelimit_store.c's table.
 *
 * Before the fix the hash was unseeded FNV-1a, so a set of keys colliding
 * in one process collided in every petreld: the collision set below,
 * found offline under FNV-1a, built a single chain of all its keys (every
 * MAIL walked it, quadratic in the set).  Now the hash is SipHash-1-3
 * keyed from getrandom() per store, so
 *   - two stores (in one process, or in two processes) place the same
 *     keys differently;
 *   - the old collision set spreads like any other keys: its longest
 *     chain is short.
 * Only the public API and the table fields (tab, size, e->next) are used,
 * so the test builds against the old store too (that is how it was shown
 * to fail there).
 */
#include "tap.h"
#include "ratelimit_store.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NKEYS 2000

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* NKEYS keys "s:xN@example.org" whose FNV-1a hash is 0 in its low 12
 * bits: one bucket of any table up to 4096 buckets under the old hash. */
static char (*collision_set(void))[48]
{
	char (*keys)[48] = calloc(NKEYS, sizeof *keys);
	int n = 0;
	for (unsigned long i = 0; keys && n < NKEYS; i++) {
		char k[48];
		snprintf(k, sizeof k, "s:x%lu@example.org", i);
		if ((fnv1a(k) & 4095) == 0)
			memcpy(keys[n++], k, sizeof k);
	}
	return keys;
}

static size_t bucket_of(const struct rl_store *st, const char *key)
{
	for (size_t i = 0; i < st->size; i++)
		for (const struct rl_entry *e = st->tab[i]; e; e = e->next)
			if (!strcmp(e->key, key))
				return i;
	return (size_t)-1;
}

static size_t longest_chain(const struct rl_store *st)
{
	size_t worst = 0;
	for (size_t i = 0; i < st->size; i++) {
		size_t n = 0;
		for (const struct rl_entry *e = st->tab[i]; e; e = e->next)
			n++;
		if (n > worst)
			worst = n;
	}
	return worst;
}

static int fill(struct rl_store *st, char (*keys)[48], int n)
{
	for (int i = 0; i < n; i++)
		if (!rl_store_get(st, keys[i], 1))
			return -1;
	return 0;
}

/* Placement of the first 256 keys, by a store built in a child process. */
static int child_placement(char (*keys)[48], size_t *out, int n)
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(p[0]);
		struct rl_store st = {0};
		size_t b[256];
		int ok = fill(&st, keys, NKEYS) == 0;
		for (int i = 0; ok && i < n; i++)
			b[i] = bucket_of(&st, keys[i]);
		ssize_t w = ok ? write(p[1], b, n * sizeof *b) : -1;
		_exit(w == (ssize_t)(n * sizeof *b) ? 0 : 1);
	}
	close(p[1]);
	size_t got = 0;
	while (got < n * sizeof *out) {
		ssize_t r = read(p[0], (char *)out + got, n * sizeof *out - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(p[0]);
	int status;
	waitpid(pid, &status, 0);
	return got == n * sizeof *out && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int main(void)
{
	char (*keys)[48] = collision_set();
	tap_ok(keys != NULL, "collision set under the old hash built (%d keys)", NKEYS);
	if (!keys)
		return tap_done();

	struct rl_store a = {0}, b = {0};
	tap_ok(fill(&a, keys, NKEYS) == 0 && fill(&b, keys, NKEYS) == 0,
	       "two stores take the same %d keys", NKEYS);
	tap_ok(a.size == b.size && a.size >= NKEYS, "same table size (%zu buckets)", a.size);

	size_t la = longest_chain(&a), lb = longest_chain(&b);
	/* 2000 keys in >= 2048 buckets: a keyed hash gives a longest chain of
	 * about 5-7; 32 is far above chance and far below the old 2000 */
	tap_ok(la < 32 && lb < 32, "the old collision set spreads: longest chains %zu and %zu", la, lb);

	int same = 0;
	for (int i = 0; i < 256; i++)
		same += bucket_of(&a, keys[i]) == bucket_of(&b, keys[i]);
	/* chance agreement is 256 / size (about 0.1 key): allow a few */
	tap_ok(same < 16, "two stores in one process place keys differently (%d of 256 in the same bucket)",
	       same);

	size_t child[256];
	int r = child_placement(keys, child, 256);
	int same_child = 0;
	for (int i = 0; r == 0 && i < 256; i++)
		same_child += bucket_of(&a, keys[i]) == child[i];
	tap_ok(r == 0 && same_child < 16,
	       "a store in another process places keys differently (%d of 256 in the same bucket)",
	       same_child);

	/* and the table still works: every key is found, in both stores */
	int found = 0;
	for (int i = 0; i < NKEYS; i++)
		found += rl_store_get(&a, keys[i], 0) != NULL && rl_store_get(&b, keys[i], 0) != NULL;
	tap_ok(found == NKEYS, "every key found again (%d of %d)", found, NKEYS);
	tap_ok(rl_store_get(&a, "s:absent@example.org", 0) == NULL, "an absent key is absent");

	rl_store_free(&a);
	rl_store_free(&b);
	free(keys);
	return tap_done();
}
