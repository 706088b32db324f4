/*
 * auth_throttle.h - AUTH across connections: failed logins and password
 * checks in flight, per client address (an IPv6 client by its /64: one
 * host can hold a whole /64).
 *
 * Two limits, both applied before a password is hashed (smtp_auth.c):
 *   - an address with 'limit' wrong passwords within 'window' ms of its
 *     first one is refused until that window is over (at most 'limit'
 *     guesses per window: no brute force from one address);
 *   - an address with 'concurrency' checks running or queued gets no more
 *     (one address cannot fill the filter threads that hash passwords).
 *
 * Memory is capped: at most 'max_entries' addresses are remembered (about
 * 80 bytes each); past that the least recently seen one with no check in
 * flight is forgotten.  Entries whose window is over are dropped as they
 * reach the old end.  A client with more addresses than the table holds
 * can make it forget (the cap is the price of bounded memory).
 *
 * Loop thread only.  Ownership: auth_throttle_new's table is freed with
 * auth_throttle_free, which takes T ** and clears it.
 */
#ifndef PETREL_AUTH_THROTTLE_H
#define PETREL_AUTH_THROTTLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct auth_throttle;

/* The address as a table key: family, then 4 (IPv4) or 8 (IPv6 /64) bytes. */
struct auth_client_key {
	unsigned char b[9];
};

void auth_client_key(const struct sockaddr_storage *ss, struct auth_client_key *k);

struct auth_throttle *auth_throttle_new(int max_entries);
void auth_throttle_free(struct auth_throttle **t);

enum auth_throttle_verdict {
	AUTH_THROTTLE_OK = 0,
	AUTH_THROTTLE_FAILURES,     /* too many wrong passwords in the window */
	AUTH_THROTTLE_BUSY,         /* too many checks in flight (or the table is full of them) */
};

struct auth_throttle_limits {
	int failures;               /* per window; 0: no limit */
	uint64_t window_ms;
	int concurrency;
};

/* May the address try a password now?  Changes nothing. */
enum auth_throttle_verdict auth_throttle_check(struct auth_throttle *t, const struct auth_client_key *k,
                                               const struct auth_throttle_limits *lim, uint64_t now_ms);
/* As auth_throttle_check; when OK, a check is in flight for the address
 * until auth_throttle_end. */
enum auth_throttle_verdict auth_throttle_begin(struct auth_throttle *t, const struct auth_client_key *k,
                                               const struct auth_throttle_limits *lim, uint64_t now_ms);
/* The check begun is over; wrong: the password was wrong. */
void auth_throttle_end(struct auth_throttle *t, const struct auth_client_key *k, bool wrong,
                       const struct auth_throttle_limits *lim, uint64_t now_ms);
/* Wrong passwords counted for the address in its current window. */
int auth_throttle_failures(struct auth_throttle *t, const struct auth_client_key *k,
                           const struct auth_throttle_limits *lim, uint64_t now_ms);
int auth_throttle_count(const struct auth_throttle *t);    /* addresses remembered */

#endif
