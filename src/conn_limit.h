/*
 * conn_limit.h - concurrent sessions per client address, for
 * client_connection_limit (Postfix's anvil connection count).
 *
 * A client is an IPv4 address (IPv4-mapped IPv6 included) or an IPv6 /64:
 * whoever holds a /64 chooses any address in it.  The table holds one
 * entry per client with at least one session, so its size is bounded by
 * the number of sessions; lookups hash the client with a key drawn at
 * first use (SipHash), so a peer cannot aim its addresses at one chain.
 *
 * struct conn_counts is embedded in its owner and zero-initialised; it
 * frees its memory whenever it becomes empty, so an owner whose sessions
 * all ended holds nothing and needs no destructor.  Loop thread only.
 */
#ifndef PETREL_CONN_LIMIT_H
#define PETREL_CONN_LIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct conn_entry;

struct conn_counts {
	struct conn_entry **buckets;   /* nbuckets chains, NULL when empty */
	size_t nbuckets;
	size_t n;                      /* clients with a session */
	uint64_t k0, k1;               /* hash key */
};

/* One more session from sa; returns that client's session count. */
int conn_counts_add(struct conn_counts *cc, const struct sockaddr *sa);
/* One session from sa ended (it was added before). */
void conn_counts_del(struct conn_counts *cc, const struct sockaddr *sa);

#endif
