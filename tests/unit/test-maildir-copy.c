/*
 * test-maildir-copy.c - table-driven tests for modules/maildir/maildir_copy.c,
 * the CRLF -> LF transform of maildir delivery.
 *
 * Each case is a message given as blocks (as delivery_read would hand
 * them over) and the bytes the maildir file must hold.  The block-boundary
 * cases are the point: a CR that ends a block and is followed by LF, by
 * another byte, by another CR, or by the end of the message.  Every output
 * is written into a buffer of exactly MAILDIR_COPY_OUT_MAX(n) bytes placed
 * at the end of a heap allocation, so under ASan a single byte past the
 * documented bound is an error (the old copy_message wrote n + 1 bytes
 * into an n-byte buffer).  Then each whole input is re-run split at every
 * point, and in one-byte blocks, which must give the same bytes.
 */
#include "maildir_copy.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

#define MAXBLK 4

struct blk {
	const char *p;
	size_t n;
};
#define B(s) { (s), sizeof(s) - 1 }

static const struct {
	const char *label;
	struct blk in[MAXBLK];
	int nin;
	const char *want;
	size_t want_len;
} cases[] = {
#define OUT(s) .want = (s), .want_len = sizeof(s) - 1
	{ "empty message", { B("") }, 1, OUT("") },
	{ "no blocks at all", { B("") }, 0, OUT("") },
	{ "one CRLF line", { B("a\r\n") }, 1, OUT("a\n") },
	{ "two lines", { B("Subject: t\r\n\r\nbody\r\n") }, 1, OUT("Subject: t\n\nbody\n") },
	{ "bare LF kept", { B("a\nb\r\n") }, 1, OUT("a\nb\n") },
	{ "bare CR mid-block kept", { B("a\rb\r\n") }, 1, OUT("a\rb\n") },
	{ "CR CR LF keeps the first CR", { B("a\r\r\n") }, 1, OUT("a\r\n") },
	{ "CR at end of message kept", { B("a\r") }, 1, OUT("a\r") },
	{ "only a CR", { B("\r") }, 1, OUT("\r") },
	{ "NUL and 8-bit unchanged", { B("\0\xff\x80\r\n") }, 1, OUT("\0\xff\x80\n") },
	{ "dots are not touched (unstuffed in the spool)", { B(".\r\n..\r\n") }, 1, OUT(".\n..\n") },
	{ "block ends in CR, next starts with LF", { B("a\r"), B("\nb") }, 2, OUT("a\nb") },
	{ "block ends in CR, next starts with not-LF", { B("a\r"), B("X") }, 2, OUT("a\rX") },
	{ "block ends in CR, next is all not-LF (n+1 out)", { B("\r"), B("XYZ") }, 2, OUT("\rXYZ") },
	{ "block ends in CR, next starts with CR", { B("a\r"), B("\r\n") }, 2, OUT("a\r\n") },
	{ "block ends in CR, next is one CR, then end", { B("\r"), B("\r") }, 2, OUT("\r\r") },
	{ "block ends in CR, then end of message", { B("abc"), B("de\r") }, 2, OUT("abcde\r") },
	{ "block ends in CR, empty block, then LF", { B("a\r"), B(""), B("\n") }, 3, OUT("a\n") },
	{ "block of CRs then block of X (the issue's message)", { B("\r\r\r\r"), B("XXXX\r\n") }, 2,
	  OUT("\r\r\r\rXXXX\n") },
	{ "CRLF split, then CRLF whole", { B("x\r"), B("\n\r\n") }, 2, OUT("x\n\n") },
	{ "LF then CR at boundary", { B("\n\r"), B("\n") }, 2, OUT("\n\n") },
	{ "four one-byte blocks", { B("\r"), B("\n"), B("\r"), B("z") }, 4, OUT("\n\rz") },
#undef OUT
};

/* Run the transform over blocks; the result is malloc'ed into *out. */
static int run(const struct blk *in, int nin, char **out, size_t *len)
{
	struct maildir_copy c;
	const char *err = NULL;
	size_t total = 0, cap = 1;
	for (int i = 0; i < nin; i++)
		cap += in[i].n + 1;
	char *res = malloc(cap);
	maildir_copy_init(&c);
	for (int i = 0; i < nin; i++) {
		/* exactly the documented bound, at the end of its allocation */
		size_t sz = MAILDIR_COPY_OUT_MAX(in[i].n), k = 0;
		char *buf = malloc(sz);
		if (maildir_copy_block(&c, in[i].p, in[i].n, buf, sz, &k, &err) < 0 || k > sz) {
			free(buf);
			free(res);
			return -1;
		}
		memcpy(res + total, buf, k);
		total += k;
		free(buf);
	}
	char *tail = malloc(MAILDIR_COPY_END_MAX);
	size_t k = 0;
	if (maildir_copy_end(&c, tail, MAILDIR_COPY_END_MAX, &k, &err) < 0 || k > 1) {
		free(tail);
		free(res);
		return -1;
	}
	memcpy(res + total, tail, k);
	total += k;
	free(tail);
	*out = res;
	*len = total;
	return 0;
}

static int same(const char *a, size_t an, const char *b, size_t bn)
{
	return an == bn && memcmp(a, b, an) == 0;
}

static void show(const char *what, const char *p, size_t n)
{
	char s[256];
	size_t k = 0;
	for (size_t i = 0; i < n && k + 5 < sizeof s; i++) {
		unsigned char ch = (unsigned char)p[i];
		k += (size_t)(ch == '\r' ? snprintf(s + k, 5, "\\r") : ch == '\n' ? snprintf(s + k, 5, "\\n")
		              : ch < 0x20 || ch >= 0x7f ? snprintf(s + k, 5, "\\x%02x", ch)
		              : snprintf(s + k, 5, "%c", ch));
	}
	s[k] = 0;
	tap_diag("%s (%zu): '%s'", what, n, s);
}

static void test_table(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *got = NULL;
		size_t n = 0;
		int r = run(cases[i].in, cases[i].nin, &got, &n);
		int ok = r == 0 && same(got, n, cases[i].want, cases[i].want_len);
		tap_ok(ok, "%s", cases[i].label);
		if (!ok) {
			show("want", cases[i].want, cases[i].want_len);
			if (r == 0)
				show("got", got, n);
		}
		free(got);
	}
}

/* The split of the input must not matter: every two-way split and the
 * one-byte split of each case's whole input give the one-block result. */
static void test_splits(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char whole[256];
		size_t wn = 0;
		for (int j = 0; j < cases[i].nin; j++) {
			memcpy(whole + wn, cases[i].in[j].p, cases[i].in[j].n);
			wn += cases[i].in[j].n;
		}
		int ok = 1;
		for (size_t at = 0; at <= wn && ok; at++) {
			struct blk two[2] = { { whole, at }, { whole + at, wn - at } };
			char *got = NULL;
			size_t n = 0;
			ok = run(two, 2, &got, &n) == 0 && same(got, n, cases[i].want, cases[i].want_len);
			free(got);
		}
		struct blk ones[256];
		for (size_t at = 0; at < wn; at++)
			ones[at] = (struct blk){ whole + at, 1 };
		char *got = NULL;
		size_t n = 0;
		if (ok)
			ok = run(ones, (int)wn, &got, &n) == 0 && same(got, n, cases[i].want, cases[i].want_len);
		free(got);
		tap_ok(ok, "every split gives the same bytes: %s", cases[i].label);
	}
}

/* 70,000 CRs then 70,000 X in 64 KiB blocks, as maildir delivers the
 * message of issue 7 item 1: the second block starts after a held CR with
 * 65,536 bytes that are not LF, i.e. 65,537 bytes out. */
static void test_issue_message(void)
{
	const size_t ncr = 70000, nx = 70000, total = ncr + nx + 2;
	char *msg = malloc(total);
	memset(msg, '\r', ncr);
	memset(msg + ncr, 'X', nx);
	memcpy(msg + ncr + nx, "\r\n", 2);
	struct blk b[3];
	int nb = 0;
	for (size_t at = 0; at < total; at += 65536)
		b[nb++] = (struct blk){ msg + at, total - at < 65536 ? total - at : 65536 };
	char *got = NULL;
	size_t n = 0;
	int ok = run(b, nb, &got, &n) == 0 && n == total - 1;
	for (size_t i = 0; ok && i < n; i++)
		ok = got[i] == (i < ncr ? '\r' : i < ncr + nx ? 'X' : '\n');
	tap_ok(ok, "70,000 CR + 70,000 X in 64 KiB blocks: every CR kept, one LF at the end");
	free(got);
	free(msg);
}

static void test_contract(void)
{
	struct maildir_copy c;
	const char *err = NULL;
	char out[8];
	size_t k = 99;
	maildir_copy_init(&c);
	int r = maildir_copy_block(&c, "abcd", 4, out, 4, &k, &err);
	tap_ok(r == -1 && k == 0 && err != NULL, "out_size n is refused (needs n + 1)");
	r = maildir_copy_block(&c, "ab\r", 3, out, 4, &k, &err);
	tap_ok(r == 0 && k == 2 && c.cr == 1, "out_size n + 1 is enough; trailing CR held");
	struct maildir_copy saved = c;
	r = maildir_copy_block(&c, "xyz", 3, out, 3, &k, &err);
	tap_ok(r == -1 && c.cr == saved.cr, "a refused call leaves the held CR in place");
	r = maildir_copy_end(&c, out, 0, &k, &err);
	tap_ok(r == -1, "end with no room is refused");
	r = maildir_copy_end(&c, out, 1, &k, &err);
	tap_ok(r == 0 && k == 1 && out[0] == '\r' && c.cr == 0, "end writes the held CR and resets");
	r = maildir_copy_end(&c, out, 1, &k, &err);
	tap_ok(r == 0 && k == 0, "end twice writes nothing");
}

int main(void)
{
	test_table();
	test_splits();
	test_issue_message();
	test_contract();
	return tap_done();
}
