/*
 * test-smtp-client.c - table-driven tests for the smtp transport's
 * parsers (modules/smtp/smtp_syntax.c): splitting a server's bytes into
 * lines (NUL, bare LF, over-long lines), multi-line replies (bad
 * continuation, a changed code, 10,000 lines, the kept text's bound),
 * EHLO keywords (SIZE with and without a value, PIPELINING, 8BITMIME,
 * SMTPUTF8, DSN, STARTTLS, AUTH mechanisms, case) and the next-hop
 * syntax ("[host]:port", "host", "[::1]:25", bad input).
 */
#include "smtp_syntax.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* --- lines --- */

struct line_case {
	const char *label;
	const char *in;
	size_t inlen;                /* 0: strlen(in) */
	enum smtp_line_status want;
	size_t len, used;            /* for SMTP_LINE_OK */
};

static const struct line_case line_cases[] = {
	{ .label = "a CRLF line", .in = "250 ok\r\n", .want = SMTP_LINE_OK, .len = 6, .used = 8 },
	{ .label = "the first of two lines", .in = "250-a\r\n250 b\r\n", .want = SMTP_LINE_OK, .len = 5, .used = 7 },
	{ .label = "no LF yet: more", .in = "250 ok", .want = SMTP_LINE_MORE },
	{ .label = "a CR alone: more", .in = "250 ok\r", .want = SMTP_LINE_MORE },
	{ .label = "empty buffer: more", .in = "", .want = SMTP_LINE_MORE },
	{ .label = "bare LF", .in = "250 ok\n", .want = SMTP_LINE_BARE_LF },
	{ .label = "LF alone", .in = "\n", .want = SMTP_LINE_BARE_LF },
	{ .label = "bare LF in a multi-line reply", .in = "220-one\n220 two\n", .want = SMTP_LINE_BARE_LF },
	{ .label = "an empty CRLF line is a line", .in = "\r\n", .want = SMTP_LINE_OK, .len = 0, .used = 2 },
	{ .label = "NUL in the line", .in = "250 a\0b\r\n", .inlen = 9, .want = SMTP_LINE_NUL },
	{ .label = "NUL in a partial line", .in = "250 a\0b", .inlen = 7, .want = SMTP_LINE_NUL },
	{ .label = "NUL after the LF belongs to the next line", .in = "250 a\r\n\0", .inlen = 8,
	  .want = SMTP_LINE_OK, .len = 5, .used = 7 },
	{ .label = "a bare CR inside a line is text", .in = "250 a\rb\r\n", .want = SMTP_LINE_OK, .len = 7, .used = 9 },
};

static void test_lines(void)
{
	for (size_t i = 0; i < N(line_cases); i++) {
		const struct line_case *c = &line_cases[i];
		size_t len = 99, used = 99;
		size_t n = c->inlen ? c->inlen : strlen(c->in);
		enum smtp_line_status got = smtp_line_next(c->in, n, &len, &used);
		int ok = got == c->want && (got != SMTP_LINE_OK || (len == c->len && used == c->used));
		tap_ok(ok, "line: %s", c->label);
		if (!ok)
			tap_diag("got %d len %zu used %zu, want %d len %zu used %zu", got, len, used, c->want,
			         c->len, c->used);
	}
	/* the bound: SMTP_LINE_MAX bytes before the LF (CR included) pass */
	size_t big = (1 << 20) + 8;
	char *b = malloc(big);
	memset(b, 'x', big);
	memcpy(b, "250 ", 4);
	size_t len = 0, used = 0;
	b[SMTP_LINE_MAX - 1] = '\r';
	b[SMTP_LINE_MAX] = '\n';
	tap_ok(smtp_line_next(b, SMTP_LINE_MAX + 1, &len, &used) == SMTP_LINE_OK && len == SMTP_LINE_MAX - 1,
	       "line: %d bytes with the CR pass", SMTP_LINE_MAX);
	b[SMTP_LINE_MAX - 1] = 'x';
	b[SMTP_LINE_MAX] = '\r';
	b[SMTP_LINE_MAX + 1] = '\n';
	tap_ok(smtp_line_next(b, SMTP_LINE_MAX + 2, &len, &used) == SMTP_LINE_TOO_LONG,
	       "line: %d bytes and CRLF is too long", SMTP_LINE_MAX);
	memset(b, 'x', big);
	tap_ok(smtp_line_next(b, SMTP_LINE_MAX, &len, &used) == SMTP_LINE_MORE,
	       "line: %d bytes without LF: more", SMTP_LINE_MAX);
	tap_ok(smtp_line_next(b, SMTP_LINE_MAX + 1, &len, &used) == SMTP_LINE_TOO_LONG,
	       "line: %d bytes without LF: too long", SMTP_LINE_MAX + 1);
	b[big - 2] = '\r';
	b[big - 1] = '\n';
	tap_ok(smtp_line_next(b, big, &len, &used) == SMTP_LINE_TOO_LONG, "line: a 1 MB line is too long");
	free(b);
}

/* --- replies --- */

struct reply_case {
	const char *label;
	const char *lines[6];        /* NULL-terminated */
	enum smtp_reply_status want;  /* of the last line */
	int code;                    /* for DONE */
	const char *text;            /* for DONE */
};

static const struct reply_case reply_cases[] = {
	{ .label = "one line", .lines = { "250 ok" }, .want = SMTP_REPLY_DONE, .code = 250, .text = "250 ok" },
	{ .label = "code alone", .lines = { "250" }, .want = SMTP_REPLY_DONE, .code = 250, .text = "250 " },
	{ .label = "code and space", .lines = { "354 " }, .want = SMTP_REPLY_DONE, .code = 354, .text = "354 " },
	{ .label = "multi-line", .lines = { "250-mx.test", "250-SIZE 10", "250 PIPELINING" },
	  .want = SMTP_REPLY_DONE, .code = 250, .text = "250 mx.test SIZE 10 PIPELINING" },
	{ .label = "continuation: more", .lines = { "250-a" }, .want = SMTP_REPLY_MORE },
	{ .label = "a new reply after a complete one", .lines = { "250 a", "354 go" },
	  .want = SMTP_REPLY_DONE, .code = 354, .text = "354 go" },
	{ .label = "the code changes within a reply", .lines = { "250-a", "251 b" },
	  .want = SMTP_REPLY_CODE_CHANGED },
	{ .label = "a 4xx line in a 2xx reply", .lines = { "250-a", "250-b", "421 bye" },
	  .want = SMTP_REPLY_CODE_CHANGED },
	{ .label = "a code below 100 keeps its digits", .lines = { "099 odd" }, .want = SMTP_REPLY_DONE,
	  .code = 99, .text = "099 odd" },
	{ .label = "letters in the code", .lines = { "25x ok" }, .want = SMTP_REPLY_MALFORMED },
	{ .label = "four digits", .lines = { "2500 ok" }, .want = SMTP_REPLY_MALFORMED },
	{ .label = "bad separator", .lines = { "250+ok" }, .want = SMTP_REPLY_MALFORMED },
	{ .label = "tab separator", .lines = { "250\tok" }, .want = SMTP_REPLY_MALFORMED },
	{ .label = "empty line", .lines = { "" }, .want = SMTP_REPLY_MALFORMED },
	{ .label = "two characters", .lines = { "25" }, .want = SMTP_REPLY_MALFORMED },
	{ .label = "bad continuation line", .lines = { "250-a", "hello" }, .want = SMTP_REPLY_MALFORMED },
	{ .label = "leading space", .lines = { " 250 ok" }, .want = SMTP_REPLY_MALFORMED },
};

static enum smtp_reply_status feed(struct smtp_reply *r, const char *line)
{
	const char *text;
	return smtp_reply_add(r, line, strlen(line), &text);
}

static void test_replies(void)
{
	for (size_t i = 0; i < N(reply_cases); i++) {
		const struct reply_case *c = &reply_cases[i];
		struct smtp_reply r;
		memset(&r, 0, sizeof r);
		enum smtp_reply_status got = SMTP_REPLY_MORE;
		size_t n = 0, k;
		while (n < N(c->lines) && c->lines[n])
			n++;
		for (k = 0; k < n; k++) {
			got = feed(&r, c->lines[k]);
			if (got < 0)
				break;
		}
		/* an error comes at the last line, not before it */
		int ok = got == c->want && (got < 0 ? k == n - 1 : k == n) &&
		         (got != SMTP_REPLY_DONE || (r.code == c->code && !strcmp(r.text, c->text)));
		tap_ok(ok, "reply: %s", c->label);
		if (!ok)
			tap_diag("got %d code %d text '%s' at line %zu of %zu", got, r.code, r.text, k + 1, n);
	}

	/* SMTP_REPLY_LINES lines pass, one more does not; a 10,000-line
	 * reply stops at the first line past the bound */
	struct smtp_reply r;
	memset(&r, 0, sizeof r);
	enum smtp_reply_status got = SMTP_REPLY_MORE;
	for (int i = 1; i < SMTP_REPLY_LINES; i++)
		got = feed(&r, "250-x");
	got = got == SMTP_REPLY_MORE ? feed(&r, "250 last") : got;
	tap_ok(got == SMTP_REPLY_DONE && r.lines == SMTP_REPLY_LINES, "reply: %d lines pass", SMTP_REPLY_LINES);
	memset(&r, 0, sizeof r);
	int at = 0;
	for (int i = 1; i <= 10000; i++) {
		got = feed(&r, i == 10000 ? "220 x" : "220-x");
		if (got < 0) {
			at = i;
			break;
		}
	}
	tap_ok(got == SMTP_REPLY_TOO_MANY && at == SMTP_REPLY_LINES + 1,
	       "reply: 10,000 lines stop at line %d (got %d at %d)", SMTP_REPLY_LINES + 1, got, at);

	/* the kept text is bounded and terminated whatever the lines hold */
	memset(&r, 0, sizeof r);
	char line[SMTP_LINE_MAX];
	memset(line, 'y', sizeof line - 1);
	line[sizeof line - 1] = 0;
	memcpy(line, "250-", 4);
	for (int i = 0; i < 50; i++)
		feed(&r, line);
	line[3] = ' ';
	got = feed(&r, line);
	tap_ok(got == SMTP_REPLY_DONE && r.textlen < sizeof r.text && strlen(r.text) == r.textlen,
	       "reply: long lines keep %zu bytes of text (bound %zu)", r.textlen, sizeof r.text);
	tap_ok(!strncmp(r.text, "250 yyy", 7), "reply: the text starts with the first line");

	/* the text of each line comes back for the EHLO keywords */
	memset(&r, 0, sizeof r);
	const char *t;
	smtp_reply_add(&r, "250-SIZE 1000", 13, &t);
	TAP_STREQ(t, "SIZE 1000", "reply: a continuation line's text");
	smtp_reply_add(&r, "250", 3, &t);
	TAP_STREQ(t, "", "reply: a code-only line has empty text");
}

/* --- EHLO keywords --- */

struct ehlo_case {
	const char *label;
	const char *kw;
	unsigned caps;
	unsigned long long size;
};

static const char auth_split[] = "AUTH XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXPLAIN";   /* 31 X */
static const char kw_long[] = "PIPELININGPIPELININGPIPELININGPIPELINING";

static const struct ehlo_case ehlo_cases[] = {
	{ .label = "PIPELINING", .kw = "PIPELINING", .caps = CAP_PIPELINING },
	{ .label = "lower case", .kw = "pipelining", .caps = CAP_PIPELINING },
	{ .label = "mixed case", .kw = "PipeLining", .caps = CAP_PIPELINING },
	{ .label = "SIZE n", .kw = "SIZE 1000", .caps = CAP_SIZE, .size = 1000 },
	{ .label = "SIZE without a value: no fixed limit", .kw = "SIZE", .caps = CAP_SIZE, .size = 0 },
	{ .label = "SIZE 0: no fixed limit", .kw = "SIZE 0", .caps = CAP_SIZE, .size = 0 },
	{ .label = "SIZE=n", .kw = "SIZE=2000", .caps = CAP_SIZE, .size = 2000 },
	{ .label = "size lower case", .kw = "size 3000", .caps = CAP_SIZE, .size = 3000 },
	{ .label = "SIZE -5 is not a huge limit", .kw = "SIZE -5", .caps = CAP_SIZE, .size = 0 },
	{ .label = "SIZE junk", .kw = "SIZE lots", .caps = CAP_SIZE, .size = 0 },
	{ .label = "SIZE saturates", .kw = "SIZE 99999999999999999999999", .caps = CAP_SIZE, .size = ~0ULL },
	{ .label = "8BITMIME", .kw = "8BITMIME", .caps = CAP_8BITMIME },
	{ .label = "SMTPUTF8", .kw = "SMTPUTF8", .caps = CAP_SMTPUTF8 },
	{ .label = "DSN", .kw = "DSN", .caps = CAP_DSN },
	{ .label = "STARTTLS", .kw = "STARTTLS", .caps = CAP_STARTTLS },
	{ .label = "starttls lower case", .kw = "starttls", .caps = CAP_STARTTLS },
	{ .label = "AUTH PLAIN LOGIN", .kw = "AUTH PLAIN LOGIN", .caps = CAP_AUTH_PLAIN | CAP_AUTH_LOGIN },
	{ .label = "AUTH=LOGIN (old syntax)", .kw = "AUTH=LOGIN", .caps = CAP_AUTH_LOGIN },
	{ .label = "auth lower case among others", .kw = "auth cram-md5 plain", .caps = CAP_AUTH_PLAIN },
	{ .label = "AUTH with unknown mechanisms only", .kw = "AUTH CRAM-MD5 XOAUTH2", .caps = 0 },
	{ .label = "AUTH with two spaces", .kw = "AUTH  LOGIN", .caps = CAP_AUTH_LOGIN },
	{ .label = "an over-long mechanism is not split into PLAIN", .kw = auth_split, .caps = 0 },
	{ .label = "an over-long keyword is no keyword", .kw = kw_long, .caps = 0 },
	{ .label = "AUTHPLAIN is not AUTH", .kw = "AUTHPLAIN", .caps = 0 },
	{ .label = "PIPELININGX is not PIPELINING", .kw = "PIPELININGX", .caps = 0 },
	{ .label = "X-PIPELINING is not PIPELINING", .kw = "X-PIPELINING", .caps = 0 },
	{ .label = "CHUNKING is not used", .kw = "CHUNKING", .caps = 0 },
	{ .label = "empty", .kw = "", .caps = 0 },
	{ .label = "a keyword with arguments", .kw = "STARTTLS now", .caps = CAP_STARTTLS },
};

static void test_ehlo(void)
{
	for (size_t i = 0; i < N(ehlo_cases); i++) {
		const struct ehlo_case *c = &ehlo_cases[i];
		unsigned caps = 0;
		unsigned long long size = 12345;
		smtp_ehlo_keyword(c->kw, &caps, &size);
		int ok = caps == c->caps && (!(c->caps & CAP_SIZE) || size == c->size) &&
		         ((c->caps & CAP_SIZE) || size == 12345);
		tap_ok(ok, "ehlo: %s", c->label);
		if (!ok)
			tap_diag("'%s': caps %#x size %llu, want %#x size %llu", c->kw, caps, size, c->caps, c->size);
	}
	/* a whole EHLO reply, as the client reads it: keywords from line 2 on */
	static const char *const reply[] = { "250-mx.test greets you", "250-SIZE 1000", "250-PIPELINING",
	                                     "250-8BITMIME", "250-AUTH PLAIN", "250 DSN" };
	struct smtp_reply r;
	memset(&r, 0, sizeof r);
	unsigned caps = 0;
	unsigned long long size = 0;
	enum smtp_reply_status st = SMTP_REPLY_MORE;
	for (size_t i = 0; i < N(reply); i++) {
		const char *t;
		st = smtp_reply_add(&r, reply[i], strlen(reply[i]), &t);
		if (r.lines > 1)
			smtp_ehlo_keyword(t, &caps, &size);
	}
	tap_ok(st == SMTP_REPLY_DONE && caps == (CAP_SIZE | CAP_PIPELINING | CAP_8BITMIME | CAP_AUTH_PLAIN | CAP_DSN) &&
	       size == 1000, "ehlo: a whole reply (caps %#x, size %llu)", caps, size);
}

/* --- next hops --- */

struct nexthop_case {
	const char *label;
	const char *in;
	int ok;
	const char *host;
	int mx, port;                /* port 25 is the preset default */
};

static const struct nexthop_case nexthop_cases[] = {
	{ .label = "[host]:port", .in = "[127.0.0.1]:2525", .ok = 1, .host = "127.0.0.1", .mx = 0, .port = 2525 },
	{ .label = "[name] keeps the default port", .in = "[smtp.provider.test]", .ok = 1,
	  .host = "smtp.provider.test", .mx = 0, .port = 25 },
	{ .label = "host: by MX", .in = "mx.example", .ok = 1, .host = "mx.example", .mx = 1, .port = 25 },
	{ .label = "host:port", .in = "mx.example:587", .ok = 1, .host = "mx.example", .mx = 1, .port = 587 },
	{ .label = "[::1]:25", .in = "[::1]:25", .ok = 1, .host = "::1", .mx = 0, .port = 25 },
	{ .label = "[IPv6:::1]:26", .in = "[IPv6:::1]:26", .ok = 1, .host = "::1", .mx = 0, .port = 26 },
	{ .label = "[ipv6:2001:db8::1]", .in = "[ipv6:2001:db8::1]", .ok = 1, .host = "2001:db8::1", .mx = 0, .port = 25 },
	{ .label = "port 65535", .in = "[h]:65535", .ok = 1, .host = "h", .mx = 0, .port = 65535 },
	{ .label = "empty", .in = "", .ok = 0 },
	{ .label = "[ alone", .in = "[", .ok = 0 },
	{ .label = "[] empty host", .in = "[]", .ok = 0 },
	{ .label = "[]:25 empty host", .in = "[]:25", .ok = 0 },
	{ .label = "[IPv6:] empty address", .in = "[IPv6:]", .ok = 0 },
	{ .label = "missing ]", .in = "[h:25", .ok = 0 },
	{ .label = "garbage after ]", .in = "[h]x", .ok = 0 },
	{ .label = "empty port after ]", .in = "[h]:", .ok = 0 },
	{ .label = "empty port", .in = "h:", .ok = 0 },
	{ .label = "no host", .in = ":25", .ok = 0 },
	{ .label = "port 0", .in = "[h]:0", .ok = 0 },
	{ .label = "port 65536", .in = "[h]:65536", .ok = 0 },
	{ .label = "port with a sign", .in = "h:+25", .ok = 0 },
	{ .label = "port with a space", .in = "h: 25", .ok = 0 },
	{ .label = "port with junk", .in = "h:25x", .ok = 0 },
	{ .label = "port of many digits", .in = "[h]:0000000000025", .ok = 0 },
	{ .label = "two ports", .in = "[h]:25:26", .ok = 0 },
	{ .label = "space in the host", .in = "a b:25", .ok = 0 },
	{ .label = "control character in the host", .in = "[a\tb]", .ok = 0 },
};

static void test_nexthop(void)
{
	for (size_t i = 0; i < N(nexthop_cases); i++) {
		const struct nexthop_case *c = &nexthop_cases[i];
		char host[300] = "";
		int mx = -1, port = 25;
		int r = smtp_parse_nexthop(c->in, host, sizeof host, &mx, &port);
		int ok = c->ok ? r == 0 && !strcmp(host, c->host) && mx == c->mx && port == c->port : r == -1;
		tap_ok(ok, "nexthop: %s", c->label);
		if (!ok)
			tap_diag("'%s': r %d host '%s' mx %d port %d", c->in, r, host, mx, port);
	}
	/* a host that does not fit the buffer is refused, not cut */
	char in[400], host[300];
	memset(in, 'h', sizeof in);
	in[0] = '[';
	memcpy(in + 301, "]:25", 5);
	int mx, port = 25;
	tap_ok(smtp_parse_nexthop(in, host, sizeof host, &mx, &port) == -1, "nexthop: a 300-byte host is refused");
	memcpy(in + 299, "]:25", 5);
	tap_ok(smtp_parse_nexthop(in, host, sizeof host, &mx, &port) == 0 && strlen(host) == 298,
	       "nexthop: a 298-byte host fits");
}

/* --- LMTP next hops --- */

struct lmtp_case {
	const char *label;
	const char *in;
	int ok;
	const char *host;
	int is_unix, port;           /* port 24 is the preset default */
};

static const struct lmtp_case lmtp_cases[] = {
	{ .label = "unix:/path", .in = "unix:/run/dovecot/lmtp", .ok = 1, .host = "/run/dovecot/lmtp",
	  .is_unix = 1, .port = 24 },
	{ .label = "a bare /path is a socket", .in = "/var/spool/postfix/private/dovecot-lmtp", .ok = 1,
	  .host = "/var/spool/postfix/private/dovecot-lmtp", .is_unix = 1, .port = 24 },
	{ .label = "[host]:port", .in = "[127.0.0.1]:2424", .ok = 1, .host = "127.0.0.1", .port = 2424 },
	{ .label = "[host] keeps the default port", .in = "[10.0.0.5]", .ok = 1, .host = "10.0.0.5", .port = 24 },
	{ .label = "host:port is not looked up by MX", .in = "mail.example:24", .ok = 1, .host = "mail.example",
	  .port = 24 },
	{ .label = "a bare host", .in = "mailstore", .ok = 1, .host = "mailstore", .port = 24 },
	{ .label = "inet:host:port (Postfix's form)", .in = "inet:mailstore:2003", .ok = 1, .host = "mailstore",
	  .port = 2003 },
	{ .label = "inet:[::1]:24", .in = "inet:[::1]:24", .ok = 1, .host = "::1", .port = 24 },
	{ .label = "unix: relative path", .in = "unix:private/dovecot-lmtp", .ok = 0 },
	{ .label = "unix: empty path", .in = "unix:", .ok = 0 },
	{ .label = "unix: control byte in the path", .in = "unix:/run/a\nb", .ok = 0 },
	{ .label = "inet: empty", .in = "inet:", .ok = 0 },
	{ .label = "empty", .in = "", .ok = 0 },
	{ .label = "bad port", .in = "[h]:99999", .ok = 0 },
	{ .label = "port not a number", .in = "h:lmtp", .ok = 0 },
};

static void test_lmtp_nexthop(void)
{
	for (size_t i = 0; i < N(lmtp_cases); i++) {
		const struct lmtp_case *c = &lmtp_cases[i];
		char host[300] = "";
		int is_unix = -1, port = 24;
		int r = smtp_parse_lmtp_nexthop(c->in, host, sizeof host, &port, &is_unix);
		int ok = c->ok ? r == 0 && !strcmp(host, c->host) && is_unix == c->is_unix && port == c->port
		               : r == -1;
		tap_ok(ok, "lmtp nexthop: %s", c->label);
		if (!ok)
			tap_diag("'%s': r %d host '%s' unix %d port %d", c->in, r, host, is_unix, port);
	}
	/* a socket path must fit sockaddr_un: 107 bytes and its NUL */
	char in[200], host[300];
	int is_unix, port;
	memcpy(in, "unix:/", 6);
	memset(in + 6, 'p', 106);
	in[112] = 0;
	tap_ok(smtp_parse_lmtp_nexthop(in, host, sizeof host, &port, &is_unix) == 0 && strlen(host) == 107,
	       "lmtp nexthop: a 107-byte socket path fits");
	in[112] = 'p';
	in[113] = 0;
	tap_ok(smtp_parse_lmtp_nexthop(in, host, sizeof host, &port, &is_unix) == -1,
	       "lmtp nexthop: a 108-byte socket path is refused, not cut");
}

int main(void)
{
	test_lines();
	test_replies();
	test_ehlo();
	test_nexthop();
	test_lmtp_nexthop();
	return tap_done();
}
