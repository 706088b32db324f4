/*
 * test-msa-senders.c - table-driven tests of the msa module's sender
 * table parser (modules/msa/msa_senders.c): each case is a file's text
 * and either the lookups it must answer or the "LINE: reason" error it
 * must give; then the From: reader, each case a field value and the
 * addresses it holds (or -1 for one that cannot be read); then the file
 * loader's FILE:LINE errors.
 */
#include "tap.h"
#include "msa_senders.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct lookup {
	const char *login, *address;
	int allowed;
};

static const struct {
	const char *label;
	const char *text;
	const char *error;          /* NULL: must parse; else a prefix of the error */
	struct lookup q[6];         /* ended by login == NULL */
} tables[] = {
	{ .label = "empty file", .text = "",
	  .q = { { "alice", "alice@example.org", 0 } } },
	{ .label = "comments and blank lines only", .text = "# a comment\n\n   \t\n  # indented\n",
	  .q = { { "alice", "x@example.org", 0 } } },
	{ .label = "one address", .text = "alice: alice.smith@example.org\n",
	  .q = { { "alice", "alice.smith@example.org", 1 }, { "alice", "bob@example.org", 0 },
	         { "bob", "alice.smith@example.org", 0 } } },
	{ .label = "address case-insensitive, login exact", .text = "alice: Alice.Smith@Example.ORG\n",
	  .q = { { "alice", "alice.smith@example.org", 1 }, { "alice", "ALICE.SMITH@EXAMPLE.ORG", 1 },
	         { "Alice", "alice.smith@example.org", 0 } } },
	{ .label = "@domain", .text = "bob: @shop.example\n",
	  .q = { { "bob", "sales@shop.example", 1 }, { "bob", "anyone@SHOP.example", 1 },
	         { "bob", "x@sub.shop.example", 0 }, { "bob", "x@shop.example.org", 0 } } },
	{ .label = "several items, blanks around", .text = "  carol :  a@x.test ,@y.test,b@x.test  \n",
	  .q = { { "carol", "a@x.test", 1 }, { "carol", "b@x.test", 1 }, { "carol", "z@y.test", 1 },
	         { "carol", "c@x.test", 0 } } },
	{ .label = "several lines of one login add up", .text = "d: a@x.test\ne: e@x.test\nd: b@x.test\n",
	  .q = { { "d", "a@x.test", 1 }, { "d", "b@x.test", 1 }, { "d", "e@x.test", 0 },
	         { "e", "e@x.test", 1 }, { "e", "a@x.test", 0 } } },
	{ .label = "login that is an address", .text = "alice@example.org: info@example.org\n",
	  .q = { { "alice@example.org", "info@example.org", 1 }, { "alice", "info@example.org", 0 } } },
	{ .label = "CRLF line ends, last line without one", .text = "f: a@x.test\r\ng: b@x.test",
	  .q = { { "f", "a@x.test", 1 }, { "g", "b@x.test", 1 } } },
	{ .label = "address with no domain never matches", .text = "h: @x.test\n",
	  .q = { { "h", "x.test", 0 }, { "h", "@x.test", 0 }, { "h", "h@", 0 } } },
	{ .label = "no colon", .text = "alice alice@x.test\n", .error = "1: expected 'login: address" },
	{ .label = "no login", .text = "\n : a@x.test\n", .error = "2: no login before the ':'" },
	{ .label = "login with a space", .text = "al ice: a@x.test\n", .error = "1: login 'al ice' has white space" },
	{ .label = "nothing after colon", .text = "# x\nalice:\n", .error = "2: no address after 'alice:'" },
	{ .label = "only blanks after colon", .text = "alice:   \t\n", .error = "1: no address after" },
	{ .label = "empty item", .text = "alice: a@x.test,,b@x.test\n", .error = "1: an empty address in the list" },
	{ .label = "trailing comma", .text = "alice: a@x.test,\n", .error = "1: an empty address in the list" },
	{ .label = "no @", .text = "alice: postmaster\n", .error = "1: 'postmaster': no '@' in it" },
	{ .label = "no domain", .text = "alice: a@\n", .error = "1: 'a@': no domain after the '@'" },
	{ .label = "bare @", .text = "alice: @\n", .error = "1: '@': no domain after the '@'" },
	{ .label = "two @", .text = "alice: a@b@x.test\n", .error = "1: 'a@b@x.test': more than one '@'" },
	{ .label = "space inside an item", .text = "alice: a b@x.test\n", .error = "1: 'a b@x.test': white space" },
	{ .label = "angle brackets", .text = "alice: <a@x.test>\n", .error = "1: '<a@x.test>': expected local@domain" },
	{ .label = "error on a later line", .text = "a: a@x.test\nb: b@x.test\nc c\n", .error = "3: expected" },
	{ .label = "NUL byte", .text = "a: a@x.test\nb: b\0@x.test\n", .error = "2: a NUL byte" },
};

/* text lengths: the NUL case needs its real length */
static size_t text_len(int i)
{
	if (strstr(tables[i].label, "NUL"))
		return sizeof "a: a@x.test\nb: b\0@x.test\n" - 1;
	return strlen(tables[i].text);
}

static void test_tables(void)
{
	for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
		struct msa_senders *t = (struct msa_senders *)1;
		char err[300] = "";
		int r = msa_senders_parse(tables[i].text, text_len((int)i), &t, err, sizeof err);
		if (tables[i].error) {
			int ok = r < 0 && t == NULL && !strncmp(err, tables[i].error, strlen(tables[i].error));
			tap_ok(ok, "senders: %s: error '%s'", tables[i].label, err);
			if (!ok)
				tap_diag("wanted '%s...'", tables[i].error);
			continue;
		}
		tap_ok(r == 0 && t != NULL, "senders: %s: parses%s%s", tables[i].label, r ? ": " : "", r ? err : "");
		for (const struct lookup *q = tables[i].q; q->login; q++) {
			int got = msa_senders_allows(t, q->login, q->address);
			tap_ok(got == q->allowed, "senders: %s: %s as <%s>: %s", tables[i].label, q->login,
			       q->address, got ? "allowed" : "refused");
		}
		msa_senders_free(&t);
		tap_ok(t == NULL, "senders: %s: free clears the pointer", tables[i].label);
	}
}

static void test_long_line(void)
{
	/* MSA_SENDERS_LINE_MAX octets pass, one more is refused with its line */
	size_t n = MSA_SENDERS_LINE_MAX;
	char *text = malloc(2 * n + 64);
	int k = sprintf(text, "ok: a@x.test\n");
	char *line = text + k;
	memcpy(line, "x: ", 3);
	size_t fill = n - 3 - strlen("@x.test");
	memset(line + 3, 'a', fill);
	memcpy(line + 3 + fill, "@x.test\n", 9);
	struct msa_senders *t;
	char err[300];
	int r = msa_senders_parse(text, strlen(text), &t, err, sizeof err);
	tap_ok(r == 0, "senders: a line of exactly %zu octets parses", n);
	msa_senders_free(&t);
	memcpy(line + 3 + fill, "b@x.test\n", 10);       /* one octet more */
	r = msa_senders_parse(text, strlen(text), &t, err, sizeof err);
	tap_ok(r < 0 && !strcmp(err, "2: line longer than 4096 octets"), "senders: %zu octets refused: '%s'",
	       n + 1, r < 0 ? err : "");
	free(text);
}

static void test_null_table(void)
{
	tap_ok(msa_senders_allows(NULL, "alice", "alice@x.test") == 0, "senders: no table allows nothing");
	tap_ok(msa_senders_count(NULL) == 0, "senders: no table counts 0");
}

static void test_load(void)
{
	char dir[] = "/tmp/petrel-unit-msa-XXXXXX";
	if (!mkdtemp(dir)) {
		tap_ok(0, "mkdtemp");
		return;
	}
	char path[128], err[512];
	snprintf(path, sizeof path, "%s/senders", dir);
	FILE *f = fopen(path, "w");
	fputs("# senders\nalice: a@x.test, @y.test\n\nbob b@x.test\n", f);
	fclose(f);
	struct msa_senders *t;
	int r = msa_senders_load(path, &t, err, sizeof err);
	char want[256];
	snprintf(want, sizeof want, "%s:4: expected 'login: address, @domain, ...'", path);
	tap_ok(r < 0 && !strcmp(err, want), "load: FILE:LINE error: '%s'", err);
	f = fopen(path, "w");
	fputs("alice: a@x.test, @y.test\nbob: b@x.test\n", f);
	fclose(f);
	r = msa_senders_load(path, &t, err, sizeof err);
	tap_ok(r == 0 && msa_senders_count(t) == 3, "load: good file, 3 entries");
	tap_ok(msa_senders_allows(t, "alice", "q@y.test") && !msa_senders_allows(t, "bob", "q@y.test"),
	       "load: lookups");
	msa_senders_free(&t);
	unlink(path);
	r = msa_senders_load(path, &t, err, sizeof err);
	snprintf(want, sizeof want, "%s: No such file or directory", path);
	tap_ok(r < 0 && !strcmp(err, want), "load: missing file: '%s'", err);
	r = msa_senders_load(dir, &t, err, sizeof err);
	tap_ok(r < 0 && strstr(err, "not a regular file"), "load: a directory: '%s'", err);
	rmdir(dir);
}

static const struct {
	const char *label;
	const char *value;
	int n;                      /* -1: cannot be read */
	const char *addrs[4];
} froms[] = {
	{ "bare addr-spec", "alice@example.org", 1, { "alice@example.org" } },
	{ "angle addr", "<alice@example.org>", 1, { "alice@example.org" } },
	{ "display name", "Alice Smith <alice@example.org>", 1, { "alice@example.org" } },
	{ "quoted display name with <> and @ in it", "\"Bob <bob@evil.test>, x\" <alice@example.org>", 1,
	  { "alice@example.org" } },
	{ "comments dropped", "alice@example.org (Alice (the real one))", 1, { "alice@example.org" } },
	{ "comment inside angle", "<alice(x)@example.org>", 1, { "alice@example.org" } },
	{ "two mailboxes", "a@x.test, \"B\" <b@y.test>", 2, { "a@x.test", "b@y.test" } },
	{ "group", "friends: a@x.test, <b@x.test>;", 2, { "a@x.test", "b@x.test" } },
	{ "empty group", "undisclosed-recipients:;", 0, { NULL } },
	{ "obs-route dropped", "<@relay.test,@other.test:alice@example.org>", 1, { "alice@example.org" } },
	{ "quoted local part unquoted", "\"alice\"@example.org", 1, { "alice@example.org" } },
	{ "quoted local part with @", "<\"evil@x.test\"@example.org>", 1, { "evil@x.test@example.org" } },
	{ "escaped quote", "\"a\\\"b\"@x.test", 1, { "a\"b@x.test" } },
	{ "empty members (obs)", "a@x.test, , b@x.test", 2, { "a@x.test", "b@x.test" } },
	{ "folding white space", "Alice\t<alice@example.org>", 1, { "alice@example.org" } },
	{ "phrase without angle is one odd address", "Alice alice@x.test", 1, { "Alicealice@x.test" } },
	{ "empty value", "", 0, { NULL } },
	{ "unterminated quote", "\"Alice <a@x.test>", -1, { NULL } },
	{ "unterminated comment", "a@x.test (x", -1, { NULL } },
	{ "unterminated angle", "Alice <a@x.test", -1, { NULL } },
	{ "angle in angle", "<a<b@x.test>>", -1, { NULL } },
	{ "text after angle", "<a@x.test> b@y.test", -1, { NULL } },
	{ "two angles", "<a@x.test> <b@y.test>", -1, { NULL } },
	{ "comma in angle", "<a@x.test, b@y.test>", -1, { NULL } },
};

static void test_from(void)
{
	for (size_t i = 0; i < sizeof froms / sizeof *froms; i++) {
		char **a = (char **)1;
		int n = msa_from_parse(froms[i].value, &a);
		int ok = n == froms[i].n && (n >= 0 || a == NULL);
		for (int k = 0; ok && k < n; k++)
			ok = !strcmp(a[k], froms[i].addrs[k]);
		tap_ok(ok, "from: %s: %d address(es)", froms[i].label, n);
		for (int k = 0; !ok && k < n; k++)
			tap_diag("got '%s'", a[k]);
		if (n >= 0)
			msa_from_free(&a, n);
	}
	/* bounded: more than MSA_FROM_MAX addresses cannot be read */
	char big[MSA_FROM_MAX * 12 + 64];
	size_t len = 0;
	for (int k = 0; k <= MSA_FROM_MAX; k++)
		len += (size_t)sprintf(big + len, "%sa%d@x.t", k ? "," : "", k);
	char **a;
	tap_ok(msa_from_parse(big, &a) == -1 && a == NULL, "from: %d addresses refused", MSA_FROM_MAX + 1);
	big[len - strlen(",a64@x.t")] = 0;
	int n = msa_from_parse(big, &a);
	tap_ok(n == MSA_FROM_MAX, "from: %d addresses read", n);
	msa_from_free(&a, n);
}

int main(void)
{
	test_tables();
	test_long_line();
	test_null_table();
	test_load();
	test_from();
	return tap_done();
}
