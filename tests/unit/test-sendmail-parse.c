/*
 * test-sendmail-parse.c - table-driven tests for src/sendmail_parse.c:
 * the address lists petrel-sendmail reads from To:, Cc:, Bcc: (-t) and
 * its command line, and the header field helpers.
 */
#include "sendmail_parse.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct list_case {
	const char *label;
	const char *in;
	int want;               /* count, or -1: malformed */
	const char *addrs;      /* the addresses joined by '|' */
};

static const struct list_case list_cases[] = {
	{ "one bare", "a@x", 1, "a@x" },
	{ "two bare", "a@x, b@y", 2, "a@x|b@y" },
	{ "white space around", "  a@x  ,\t b@y ", 2, "a@x|b@y" },
	{ "display name", "Bob Smith <b@y>", 1, "b@y" },
	{ "quoted display name with comma", "\"Smith, Bob\" <b@y>, c@z", 2, "b@y|c@z" },
	{ "comment dropped", "(boss) a@x (really)", 1, "a@x" },
	{ "nested comment with parens", "a@x (a (b) c), d@e", 2, "a@x|d@e" },
	{ "quoted pair in comment", "a@x (\\) still comment), b@y", 2, "a@x|b@y" },
	{ "quoted local part kept", "\"a b\"@x", 1, "\"a b\"@x" },
	{ "quoted local part with comma", "\"a,b\"@x, c@y", 2, "\"a,b\"@x|c@y" },
	{ "group", "team: a@x, b@y;", 2, "a@x|b@y" },
	{ "empty group", "undisclosed-recipients:;", 0, "" },
	{ "group then address", "g: a@x; c@z", 2, "a@x|c@z" },
	{ "source route dropped", "<@r1,@r2:u@d>", 1, "u@d" },
	{ "folded", "a@x,\r\n b@y", 2, "a@x|b@y" },
	{ "empty elements", ", ,a@x,,", 1, "a@x" },
	{ "empty list", "", 0, "" },
	{ "bare local part", "root", 1, "root" },
	{ "angle with comma in display", "Doe, J <j@d>", 2, "Doe|j@d" },
	{ "unclosed angle", "<a@x", -1, "" },
	{ "stray close angle", "a@x>", -1, "" },
	{ "nested angle", "<<a@x>>", -1, "" },
	{ "unclosed quote", "\"a@x", -1, "" },
	{ "unclosed comment", "a@x (oops", -1, "" },
	{ "route without colon", "<@r1u@d>", -1, "" },
};

static char got[4096];

static int collect(void *arg, const char *addr)
{
	(void)arg;
	if (*got)
		strcat(got, "|");
	strcat(got, addr);
	return 0;
}

static int stop_at_two(void *arg, const char *addr)
{
	(void)addr;
	return ++*(int *)arg >= 2;
}

int main(void)
{
	for (size_t i = 0; i < N(list_cases); i++) {
		const struct list_case *c = &list_cases[i];
		got[0] = 0;
		int n = sm_addr_list(c->in, strlen(c->in), collect, NULL);
		bool ok = n == c->want && (n < 0 || !strcmp(got, c->addrs));
		tap_ok(ok, "addr list: %s", c->label);
		if (!ok)
			tap_diag("in '%s': got %d '%s', want %d '%s'", c->in, n, got, c->want, c->addrs);
	}
	/* an address of SM_ADDR_MAX - 1 bytes passes; one more is an error */
	char *big = malloc(SM_ADDR_MAX + 8);
	memset(big, 'a', SM_ADDR_MAX + 8);
	memcpy(big + SM_ADDR_MAX - 1 - 2, "@x", 2);
	got[0] = 0;
	char *mem = malloc(SM_ADDR_MAX * 2);
	int n = sm_addr_list(big, SM_ADDR_MAX - 1, collect, NULL);
	(void)mem;
	tap_ok(n == 1 && strlen(got) == SM_ADDR_MAX - 1, "address of SM_ADDR_MAX-1 bytes kept whole");
	n = sm_addr_list(big, SM_ADDR_MAX, collect, NULL);
	tap_ok(n == -1, "address of SM_ADDR_MAX bytes refused, not cut");
	free(big);
	free(mem);
	/* the list is read without a NUL after it: no read past n */
	const char *s = "a@x, b@y, c@z";
	char *exact = malloc(9);
	memcpy(exact, s, 9);    /* "a@x, b@y," */
	got[0] = 0;
	n = sm_addr_list(exact, 8, collect, NULL);
	tap_ok(n == 2 && !strcmp(got, "a@x|b@y"), "reads only the given length");
	free(exact);
	int calls = 0;
	tap_ok(sm_addr_list("a@x, b@y, c@z", 13, stop_at_two, &calls) == -1 && calls == 2,
	       "callback stops the list");

	size_t v;
	tap_ok(sm_field_is("To: a@x\r\n", 9, "to", &v) && v == 3, "field To: (case, value offset)");
	tap_ok(sm_field_is("BCC: a@x\r\n", 10, "bcc", &v) && v == 4, "field BCC:");
	tap_ok(sm_field_is("To : a@x\r\n", 10, "to", &v) && v == 4, "field 'To :' (obsolete space)");
	tap_ok(!sm_field_is("Tox: a@x\r\n", 10, "to", &v), "Tox: is not To:");
	tap_ok(!sm_field_is("To", 2, "to", &v), "To without colon is not a field");
	tap_ok(!sm_field_is("Resent-To: a\r\n", 14, "to", &v), "Resent-To: is not To:");

	const char *h = "To: a,\r\n b\r\n\tc\r\nCc: d\r\n";
	tap_ok(sm_field_end(h, strlen(h)) == 16, "field end covers continuation lines");
	tap_ok(sm_field_end(h + 16, strlen(h) - 16) == strlen(h) - 16, "last field");
	tap_ok(sm_field_end("X: y", 4) == 4, "field without line end runs to the end");
	tap_ok(sm_field_end("X: y\r\n", 6) == 6, "field ending the buffer");
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}
