/*
 * conn_limit.c - sessions per client address (see conn_limit.h).
 *
 * Chained hash table, power-of-two buckets, doubled when the clients
 * outnumber the buckets; an entry is freed when its count drops to 0 and
 * the whole table when the last one goes.  Hash: SipHash-2-4 of the
 * client (two 64-bit words) under a random key drawn when the table is
 * first filled.
 */
#include "conn_limit.h"
#include "mem.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct conn_entry {
	uint64_t addr;        /* IPv4 address, or the first 64 bits of an IPv6 one */
	uint64_t family;      /* 4 or 6 */
	int count;
	struct conn_entry *next;
};

/* The client of sa as two words: IPv4 (mapped too) whole, IPv6 by /64. */
static void client_key(const struct sockaddr *sa, uint64_t *addr, uint64_t *family)
{
	*addr = 0;
	*family = 0;
	if (sa->sa_family == AF_INET) {
		uint32_t a;
		memcpy(&a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		*addr = a;
		*family = 4;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			uint32_t a;
			memcpy(&a, a6->s6_addr + 12, 4);
			*addr = a;
			*family = 4;
		} else {
			memcpy(addr, a6->s6_addr, 8);
			*family = 6;
		}
	}
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                        \
	do {                                                            \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                    \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                    \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
	} while (0)

/* SipHash-2-4 of the 16 bytes m0, m1. */
static uint64_t siphash2(uint64_t k0, uint64_t k1, uint64_t m0, uint64_t m1)
{
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
	uint64_t m[3] = { m0, m1, (uint64_t)16 << 56 };
	for (int i = 0; i < 3; i++) {
		v3 ^= m[i];
		SIPROUND;
		SIPROUND;
		v0 ^= m[i];
	}
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static void seed(struct conn_counts *cc)
{
	uint64_t k[2];
	if (getrandom(k, sizeof k, 0) != (ssize_t)sizeof k) {
		/* no entropy source: still unpredictable enough from outside */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
		k[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)cc;
	}
	cc->k0 = k[0];
	cc->k1 = k[1] | 1;     /* never both 0: that marks "not seeded" */
}

static size_t bucket_of(const struct conn_counts *cc, uint64_t addr, uint64_t family)
{
	return (size_t)(siphash2(cc->k0, cc->k1, addr, family) & (cc->nbuckets - 1));
}

static void grow(struct conn_counts *cc)
{
	size_t nb = cc->nbuckets ? cc->nbuckets * 2 : 64;
	struct conn_entry **old = cc->buckets;
	size_t oldn = cc->nbuckets;
	cc->buckets = xcalloc(nb, sizeof *cc->buckets);
	cc->nbuckets = nb;
	for (size_t i = 0; i < oldn; i++) {
		for (struct conn_entry *e = old[i], *next; e; e = next) {
			next = e->next;
			size_t b = bucket_of(cc, e->addr, e->family);
			e->next = cc->buckets[b];
			cc->buckets[b] = e;
		}
	}
	free(old);
}

int conn_counts_add(struct conn_counts *cc, const struct sockaddr *sa)
{
	uint64_t addr, family;
	client_key(sa, &addr, &family);
	if (!cc->k1)
		seed(cc);
	if (cc->n >= cc->nbuckets)
		grow(cc);
	size_t b = bucket_of(cc, addr, family);
	for (struct conn_entry *e = cc->buckets[b]; e; e = e->next)
		if (e->addr == addr && e->family == family)
			return ++e->count;
	struct conn_entry *e = xmalloc(sizeof *e);
	*e = (struct conn_entry){ .addr = addr, .family = family, .count = 1, .next = cc->buckets[b] };
	cc->buckets[b] = e;
	cc->n++;
	return 1;
}

void conn_counts_del(struct conn_counts *cc, const struct sockaddr *sa)
{
	uint64_t addr, family;
	client_key(sa, &addr, &family);
	if (!cc->nbuckets)
		return;
	size_t b = bucket_of(cc, addr, family);
	for (struct conn_entry **pe = &cc->buckets[b]; *pe; pe = &(*pe)->next) {
		struct conn_entry *e = *pe;
		if (e->addr != addr || e->family != family)
			continue;
		if (--e->count > 0)
			return;
		*pe = e->next;
		free(e);
		if (--cc->n == 0) {
			xfree(&cc->buckets);
			cc->nbuckets = 0;
		}
		return;
	}
}
