/*
 * test-auth-throttle.c - the per-address AUTH table of src/auth_throttle.c
 * with a clock the test drives: the failure limit and its window, checks
 * in flight, IPv4, IPv4-mapped and IPv6 /64 keys, and memory: the table
 * never holds more than its cap, idle entries expire, and an address with
 * a check in flight is never forgotten.
 */
#include "auth_throttle.h"
#include "tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static struct auth_client_key key4(const char *a)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	in->sin_family = AF_INET;
	inet_pton(AF_INET, a, &in->sin_addr);
	struct auth_client_key k;
	auth_client_key(&ss, &k);
	return k;
}

static struct auth_client_key key6(const char *a)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	in6->sin6_family = AF_INET6;
	inet_pton(AF_INET6, a, &in6->sin6_addr);
	struct auth_client_key k;
	auth_client_key(&ss, &k);
	return k;
}

static const struct auth_throttle_limits lim = { .failures = 3, .window_ms = 1000, .concurrency = 2 };

/* One whole check: begin, then end (wrong or right); the begin verdict. */
static int attempt(struct auth_throttle *t, const struct auth_client_key *k, bool wrong, uint64_t now)
{
	enum auth_throttle_verdict v = auth_throttle_begin(t, k, &lim, now);
	if (v == AUTH_THROTTLE_OK)
		auth_throttle_end(t, k, wrong, &lim, now);
	return v;
}

static void test_failures_and_window(void)
{
	struct auth_throttle *t = auth_throttle_new(100);
	struct auth_client_key a = key4("192.0.2.1"), b = key4("192.0.2.2");
	for (int i = 0; i < 3; i++)
		tap_ok(attempt(t, &a, true, 100 + (uint64_t)i) == AUTH_THROTTLE_OK, "wrong password %d is checked", i + 1);
	tap_ok(auth_throttle_failures(t, &a, &lim, 200) == 3, "3 failures counted");
	tap_ok(auth_throttle_check(t, &a, &lim, 200) == AUTH_THROTTLE_FAILURES, "the 4th is refused");
	tap_ok(attempt(t, &a, false, 300) == AUTH_THROTTLE_FAILURES, "... even a right one, before any check");
	tap_ok(attempt(t, &b, false, 300) == AUTH_THROTTLE_OK, "another address is not refused");
	tap_ok(auth_throttle_check(t, &a, &lim, 1099) == AUTH_THROTTLE_FAILURES, "refused until the window ends");
	tap_ok(attempt(t, &a, true, 1100) == AUTH_THROTTLE_OK, "the window over: checked again");
	tap_ok(auth_throttle_failures(t, &a, &lim, 1100) == 1, "a new window counts from 1");
	auth_throttle_free(&t);
	tap_ok(t == NULL, "free clears the pointer");
}

static void test_no_limit(void)
{
	struct auth_throttle *t = auth_throttle_new(10);
	struct auth_throttle_limits off = lim;
	off.failures = 0;
	struct auth_client_key a = key4("192.0.2.1");
	int refused = 0;
	for (int i = 0; i < 50; i++) {
		if (auth_throttle_begin(t, &a, &off, 10) != AUTH_THROTTLE_OK)
			refused++;
		else
			auth_throttle_end(t, &a, true, &off, 10);
	}
	tap_ok(refused == 0, "failures = 0: no failure limit");
	auth_throttle_free(&t);
}

static void test_concurrency(void)
{
	struct auth_throttle *t = auth_throttle_new(100);
	struct auth_client_key a = key4("198.51.100.7"), b = key4("198.51.100.8");
	tap_ok(auth_throttle_begin(t, &a, &lim, 0) == AUTH_THROTTLE_OK, "check 1 in flight");
	tap_ok(auth_throttle_begin(t, &a, &lim, 0) == AUTH_THROTTLE_OK, "check 2 in flight");
	tap_ok(auth_throttle_begin(t, &a, &lim, 0) == AUTH_THROTTLE_BUSY, "a 3rd at once: busy");
	tap_ok(auth_throttle_begin(t, &b, &lim, 0) == AUTH_THROTTLE_OK, "another address is not busy");
	auth_throttle_end(t, &a, false, &lim, 1);
	tap_ok(auth_throttle_begin(t, &a, &lim, 1) == AUTH_THROTTLE_OK, "one over: room for one more");
	auth_throttle_end(t, &a, false, &lim, 2);
	auth_throttle_end(t, &a, false, &lim, 2);
	auth_throttle_end(t, &b, false, &lim, 2);
	tap_ok(auth_throttle_count(t) == 0, "right passwords and nothing in flight: nothing remembered");
	auth_throttle_free(&t);
}

static void test_keys(void)
{
	struct auth_client_key a = key6("2001:db8:1:2:aaaa::1"), b = key6("2001:db8:1:2:bbbb::9");
	struct auth_client_key c = key6("2001:db8:1:3::1");
	struct auth_client_key m = key6("::ffff:192.0.2.1"), v4 = key4("192.0.2.1");
	tap_ok(!memcmp(&a, &b, sizeof a), "IPv6: one /64 is one key");
	tap_ok(memcmp(&a, &c, sizeof a) != 0, "IPv6: another /64 is another key");
	tap_ok(!memcmp(&m, &v4, sizeof m), "IPv4-mapped IPv6 is the IPv4 key");
	struct auth_throttle *t = auth_throttle_new(100);
	for (int i = 0; i < 3; i++)
		attempt(t, &a, true, 5);
	tap_ok(auth_throttle_check(t, &b, &lim, 6) == AUTH_THROTTLE_FAILURES,
	       "failures from one host of a /64 refuse the others");
	auth_throttle_free(&t);
}

static void test_memory_cap(void)
{
	enum { CAP = 64 };
	struct auth_throttle *t = auth_throttle_new(CAP);
	char addr[32];
	int over = 0;
	for (int i = 0; i < 10000; i++) {
		snprintf(addr, sizeof addr, "10.%d.%d.%d", i >> 16 & 255, i >> 8 & 255, i & 255);
		struct auth_client_key k = key4(addr);
		attempt(t, &k, true, 10);
		if (auth_throttle_count(t) > CAP)
			over++;
	}
	tap_ok(over == 0 && auth_throttle_count(t) == CAP, "10000 addresses: never more than the cap (%d)",
	       auth_throttle_count(t));
	/* the most recent ones are remembered, the oldest forgotten */
	struct auth_client_key last = key4("10.0.39.15"), first = key4("10.0.0.0");
	tap_ok(auth_throttle_failures(t, &last, &lim, 10) == 1, "the last address is remembered");
	tap_ok(auth_throttle_failures(t, &first, &lim, 10) == 0, "the first one was forgotten");
	/* expiry: once their window is over, old entries go as others come */
	struct auth_client_key k = key4("192.0.2.200");
	for (int i = 0; i < CAP; i++)
		attempt(t, &k, false, 5000 + (uint64_t)i);
	tap_ok(auth_throttle_count(t) < CAP, "expired entries are dropped (%d left)", auth_throttle_count(t));
	auth_throttle_free(&t);

	/* an address with a check in flight is never evicted */
	t = auth_throttle_new(4);
	struct auth_client_key busy = key4("203.0.113.1");
	tap_ok(auth_throttle_begin(t, &busy, &lim, 0) == AUTH_THROTTLE_OK, "a check in flight");
	for (int i = 0; i < 100; i++) {
		snprintf(addr, sizeof addr, "203.0.114.%d", i);
		struct auth_client_key o = key4(addr);
		attempt(t, &o, true, 1);
	}
	tap_ok(auth_throttle_begin(t, &busy, &lim, 2) == AUTH_THROTTLE_OK, "still in flight: counted (2nd)");
	tap_ok(auth_throttle_begin(t, &busy, &lim, 2) == AUTH_THROTTLE_BUSY, "and the cap holds (3rd busy)");
	auth_throttle_end(t, &busy, true, &lim, 3);
	auth_throttle_end(t, &busy, true, &lim, 3);
	tap_ok(auth_throttle_failures(t, &busy, &lim, 3) == 2, "its failures were kept");
	/* a table full of checks in flight refuses newcomers rather than grow */
	auth_throttle_free(&t);
	t = auth_throttle_new(2);
	struct auth_client_key x = key4("10.9.9.1"), y = key4("10.9.9.2"), z = key4("10.9.9.3");
	auth_throttle_begin(t, &x, &lim, 0);
	auth_throttle_begin(t, &y, &lim, 0);
	tap_ok(auth_throttle_begin(t, &z, &lim, 0) == AUTH_THROTTLE_BUSY && auth_throttle_count(t) == 2,
	       "full of checks in flight: busy, no growth");
	auth_throttle_end(t, &x, false, &lim, 1);
	auth_throttle_end(t, &y, false, &lim, 1);
	auth_throttle_free(&t);
}

int main(void)
{
	test_failures_and_window();
	test_no_limit();
	test_concurrency();
	test_keys();
	test_memory_cap();
	return tap_done();
}
