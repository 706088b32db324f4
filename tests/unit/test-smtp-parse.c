/*
 * test-smtp-parse.c - table-driven tests for core/smtp_parse.c.
 *
 * Tables: whole command lines (every verb, good and bad arguments,
 * MAIL/RCPT parameters, every reply the parser can give), the DSN
 * parameters (RFC 3461) and xtext decoding, bare paths
 * through smtp_parse_path (address grammar, literals, UTF-8, relay
 * tricks), length limits built at run time (each limit at the limit and
 * one over), smtp_addr_format, and smtp_verb_name.  One TAP line per case;
 * a failing case prints what differed as a TAP diagnostic.
 */
#include "smtp_parse.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

/* A string literal and its length, so cases may contain NUL octets. */
#define LINE(s) .line = (s), .len = sizeof(s) - 1
#define PATH(s) .path = (s), .len = sizeof(s) - 1

/* UTF-8 pieces, kept apart so no \x escape runs into a following letter. */
#define U_UE     "\xc3\xbc"             /* u with diaeresis, 2 octets */
#define U_UE_CAP "\xc3\x9c"             /* U with diaeresis */
#define U_E      "\xc3\xa9"             /* e acute */
#define U_CJK1   "\xe7\x94\xa8"         /* 3 octets */
#define U_CJK2   "\xe6\x88\xb7"
#define U_CJK3   "\xe4\xbe\x8b"
#define U_CJK4   "\xe5\xad\x90"
#define U_EMOJI  "\xf0\x9f\x98\x80"     /* 4 octets */

/* The replies, spelled out here independently of the implementation. */
#define R_UNKNOWN      "500 5.5.1 Command unrecognized"
#define R_LINE_LONG    "500 5.5.6 Line too long"
#define R_HELO         "501 5.5.2 Syntax: HELO hostname"
#define R_EHLO         "501 5.5.2 Syntax: EHLO hostname"
#define R_MAIL         "501 5.5.2 Syntax: MAIL FROM:<address>"
#define R_RCPT         "501 5.5.2 Syntax: RCPT TO:<address>"
#define R_BDAT         "501 5.5.2 Syntax: BDAT chunk-size [LAST]"
#define R_NOOP         "501 5.5.2 Syntax: NOOP [string]"
#define R_VRFY         "501 5.5.2 Syntax: VRFY address"
#define R_EXPN         "501 5.5.2 Syntax: EXPN mailing-list"
#define R_HELP         "501 5.5.2 Syntax: HELP [topic]"
#define R_AUTH         "501 5.5.2 Syntax: AUTH mechanism [initial-response]"
#define R_DATA         "501 5.5.4 Syntax: DATA"
#define R_RSET         "501 5.5.4 Syntax: RSET"
#define R_QUIT         "501 5.5.4 Syntax: QUIT"
#define R_STARTTLS     "501 5.5.4 Syntax: STARTTLS"
#define R_BAD_SENDER   "501 5.1.7 Bad sender address syntax"
#define R_BAD_RCPT     "501 5.1.3 Bad recipient address syntax"
#define R_LONG_SENDER  "501 5.1.7 Sender address too long"
#define R_LONG_RCPT    "501 5.1.3 Recipient address too long"
#define R_PARAM        "555 5.5.4 Unsupported parameter"
#define R_PARAM_VALUE  "501 5.5.4 Bad parameter value"
#define R_NEED_UTF8    "553 5.6.7 Non-ASCII sender address requires SMTPUTF8"

/* ------------------------------------------------------------------ */
/* Failure messages                                                   */
/* ------------------------------------------------------------------ */

struct why_buf {
	char text[1024];
	size_t used;
};

__attribute__((format(printf, 2, 3)))
static void why_add(struct why_buf *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (w->used >= sizeof(w->text))
		return;
	va_start(ap, fmt);
	n = vsnprintf(w->text + w->used, sizeof(w->text) - w->used, fmt, ap);
	va_end(ap);
	if (n > 0)
		w->used += (size_t)n;
}

static void check_str(struct why_buf *w, const char *what, const char *got,
                      const char *want)
{
	if (!want)
		return;
	if (!got || strcmp(got, want) != 0)
		why_add(w, "%s: got '%s', want '%s'; ", what,
		        got ? got : "(null)", want);
}

static void check_u64(struct why_buf *w, const char *what, uint64_t got,
                      uint64_t want)
{
	if (got != want)
		why_add(w, "%s: got %llu, want %llu; ", what,
		        (unsigned long long)got, (unsigned long long)want);
}

static void report(const char *table, const char *label, struct why_buf *w)
{
	tap_ok(w->used == 0, "%s: %s", table, label);
	if (w->used)
		tap_diag("%s", w->text);
}

/* Fields of a parsed address, as both command and path cases expect them. */
struct want_addr {
	const char *local, *local_plain, *domain;   /* NULL: not checked */
	bool null, quoted, utf8, literal;           /* always checked */
};

static void check_addr(struct why_buf *w, const struct smtp_addr *a,
                       const struct want_addr *x)
{
	check_str(w, "local", a->local, x->local);
	check_str(w, "local_plain", a->local_plain, x->local_plain);
	check_str(w, "domain", a->domain, x->domain);
	check_u64(w, "null", a->null, x->null);
	check_u64(w, "quoted", a->quoted, x->quoted);
	check_u64(w, "utf8", a->utf8, x->utf8);
	check_u64(w, "literal", a->literal, x->literal);
}

/* ------------------------------------------------------------------ */
/* Command lines                                                      */
/* ------------------------------------------------------------------ */

struct cmd_case {
	const char *label;
	const char *line;
	size_t len;
	const char *reply;              /* NULL: must parse */
	enum smtp_verb verb;            /* checked on success */
	const char *arg;                /* checked when non-NULL */
	struct want_addr addr;          /* checked for MAIL/RCPT successes */
	bool has_size;
	uint64_t size;
	enum smtp_body body;
	bool smtputf8;
	uint64_t chunk_size;
	bool last;
};

static const struct cmd_case cmd_cases[] = {
	/* HELO / EHLO */
	{ .label = "HELO with domain", LINE("HELO client.example"),
	  .verb = SMTP_HELO, .arg = "client.example" },
	{ .label = "helo lower case", LINE("helo client.example"),
	  .verb = SMTP_HELO, .arg = "client.example" },
	{ .label = "HELO address literal", LINE("HELO [192.0.2.1]"),
	  .verb = SMTP_HELO, .arg = "[192.0.2.1]" },
	{ .label = "HELO extra spaces trimmed", LINE("HELO   c.example  "),
	  .verb = SMTP_HELO, .arg = "c.example" },
	{ .label = "HELO without argument", LINE("HELO"), .reply = R_HELO },
	{ .label = "HELO only spaces", LINE("HELO    "), .reply = R_HELO },
	{ .label = "HELO control octet", LINE("HELO a\x01z"), .reply = R_HELO },
	{ .label = "HELO NUL octet", LINE("HELO a\0z"), .reply = R_HELO },
	{ .label = "EHLO with domain", LINE("EHLO mx.example.org"),
	  .verb = SMTP_EHLO, .arg = "mx.example.org" },
	{ .label = "EhLo mixed case", LINE("EhLo mx"),
	  .verb = SMTP_EHLO, .arg = "mx" },
	{ .label = "EHLO tab separator", LINE("EHLO\tmx.example"),
	  .verb = SMTP_EHLO, .arg = "mx.example" },
	{ .label = "EHLO IPv6 literal", LINE("EHLO [IPv6:2001:db8::1]"),
	  .verb = SMTP_EHLO, .arg = "[IPv6:2001:db8::1]" },
	{ .label = "EHLO without argument", LINE("EHLO"), .reply = R_EHLO },
	{ .label = "EHLO only a tab", LINE("EHLO\t"), .reply = R_EHLO },
	{ .label = "EHLO glued to argument", LINE("EHLOmx"), .reply = R_UNKNOWN },

	/* MAIL: the command shape */
	{ .label = "MAIL plain", LINE("MAIL FROM:<a@b.example>"),
	  .verb = SMTP_MAIL,
	  .addr = { .local = "a", .local_plain = "a", .domain = "b.example" } },
	{ .label = "mail from lower case, domain lower-cased",
	  LINE("mail from:<A@B.EXAMPLE>"), .verb = SMTP_MAIL,
	  .addr = { .local = "A", .local_plain = "A", .domain = "b.example" } },
	{ .label = "MAIL one space after colon", LINE("MAIL FROM: <a@b>"),
	  .verb = SMTP_MAIL, .addr = { .local = "a", .domain = "b" } },
	{ .label = "MAIL several spaces after colon",
	  LINE("MAIL FROM:   <a@b>"), .verb = SMTP_MAIL,
	  .addr = { .local = "a", .domain = "b" } },
	{ .label = "MAIL two spaces before FROM", LINE("MAIL  FROM:<a@b>"),
	  .verb = SMTP_MAIL, .addr = { .local = "a", .domain = "b" } },
	{ .label = "MAIL trailing space", LINE("MAIL FROM:<a@b> "),
	  .verb = SMTP_MAIL, .addr = { .local = "a", .domain = "b" } },
	{ .label = "MAIL leading space before verb", LINE(" MAIL FROM:<a@b>"),
	  .verb = SMTP_MAIL, .addr = { .local = "a", .domain = "b" } },
	{ .label = "MAIL null sender", LINE("MAIL FROM:<>"), .verb = SMTP_MAIL,
	  .addr = { .null = true, .local = "", .domain = "" } },
	{ .label = "MAIL null sender with SIZE", LINE("MAIL FROM:<> SIZE=0"),
	  .verb = SMTP_MAIL, .addr = { .null = true }, .has_size = true },
	{ .label = "MAIL space before colon", LINE("MAIL FROM :<a@b>"),
	  .reply = R_MAIL },
	{ .label = "MAIL no colon", LINE("MAIL FROM<a@b>"), .reply = R_MAIL },
	{ .label = "MAIL TO: instead of FROM:", LINE("MAIL TO:<a@b>"),
	  .reply = R_MAIL },
	{ .label = "MAIL alone", LINE("MAIL"), .reply = R_MAIL },
	{ .label = "MAIL FROM: and nothing", LINE("MAIL FROM:"),
	  .reply = R_MAIL },
	{ .label = "MAIL FROM: and spaces", LINE("MAIL FROM:   "),
	  .reply = R_MAIL },
	{ .label = "MAILFROM glued", LINE("MAILFROM:<a@b>"), .reply = R_UNKNOWN },

	/* MAIL: address errors */
	{ .label = "MAIL missing brackets", LINE("MAIL FROM:a@b"),
	  .reply = R_BAD_SENDER },
	{ .label = "MAIL missing >", LINE("MAIL FROM:<a@b"),
	  .reply = R_BAD_SENDER },
	{ .label = "MAIL missing <", LINE("MAIL FROM:a@b>"),
	  .reply = R_BAD_SENDER },
	{ .label = "MAIL trailing garbage after >", LINE("MAIL FROM:<a@b>x"),
	  .reply = R_BAD_SENDER },
	{ .label = "MAIL double >", LINE("MAIL FROM:<a@b>>"),
	  .reply = R_BAD_SENDER },
	{ .label = "MAIL NUL after >", LINE("MAIL FROM:<a@b>\0"),
	  .reply = R_BAD_SENDER },
	{ .label = "MAIL space in address", LINE("MAIL FROM:<a @b>"),
	  .reply = R_BAD_SENDER },
	{ .label = "MAIL space after <", LINE("MAIL FROM:< a@b>"),
	  .reply = R_BAD_SENDER },
	{ .label = "MAIL space before >", LINE("MAIL FROM:<a@b >"),
	  .reply = R_BAD_SENDER },
	{ .label = "MAIL <Postmaster> is RCPT only", LINE("MAIL FROM:<Postmaster>"),
	  .reply = R_BAD_SENDER },
	{ .label = "MAIL no domain", LINE("MAIL FROM:<user>"),
	  .reply = R_BAD_SENDER },
	{ .label = "MAIL bad literal", LINE("MAIL FROM:<a@[1.2.3.999]>"),
	  .reply = R_BAD_SENDER },
	{ .label = "MAIL source route dropped",
	  LINE("MAIL FROM:<@relay.example:a@b.example>"), .verb = SMTP_MAIL,
	  .addr = { .local = "a", .domain = "b.example" } },

	/* MAIL: parameters */
	{ .label = "SIZE", LINE("MAIL FROM:<a@b> SIZE=123"), .verb = SMTP_MAIL,
	  .has_size = true, .size = 123, .addr = { .local = "a" } },
	{ .label = "SIZE lower case keyword", LINE("MAIL FROM:<a@b> size=42"),
	  .verb = SMTP_MAIL, .has_size = true, .size = 42,
	  .addr = { .local = "a" } },
	{ .label = "SIZE leading zeros", LINE("MAIL FROM:<a@b> SIZE=007"),
	  .verb = SMTP_MAIL, .has_size = true, .size = 7,
	  .addr = { .local = "a" } },
	{ .label = "SIZE UINT64_MAX",
	  LINE("MAIL FROM:<a@b> SIZE=18446744073709551615"), .verb = SMTP_MAIL,
	  .has_size = true, .size = UINT64_MAX, .addr = { .local = "a" } },
	{ .label = "SIZE UINT64_MAX+1",
	  LINE("MAIL FROM:<a@b> SIZE=18446744073709551616"),
	  .reply = R_PARAM_VALUE },
	{ .label = "SIZE 20 nines",
	  LINE("MAIL FROM:<a@b> SIZE=99999999999999999999"),
	  .reply = R_PARAM_VALUE },
	{ .label = "SIZE empty value", LINE("MAIL FROM:<a@b> SIZE="),
	  .reply = R_PARAM_VALUE },
	{ .label = "SIZE without =", LINE("MAIL FROM:<a@b> SIZE"),
	  .reply = R_PARAM_VALUE },
	{ .label = "SIZE negative", LINE("MAIL FROM:<a@b> SIZE=-1"),
	  .reply = R_PARAM_VALUE },
	{ .label = "SIZE plus sign", LINE("MAIL FROM:<a@b> SIZE=+1"),
	  .reply = R_PARAM_VALUE },
	{ .label = "SIZE letters", LINE("MAIL FROM:<a@b> SIZE=abc"),
	  .reply = R_PARAM_VALUE },
	{ .label = "SIZE trailing letter", LINE("MAIL FROM:<a@b> SIZE=12a"),
	  .reply = R_PARAM_VALUE },
	{ .label = "SIZE given twice", LINE("MAIL FROM:<a@b> SIZE=1 SIZE=2"),
	  .reply = R_PARAM_VALUE },
	{ .label = "BODY=7BIT", LINE("MAIL FROM:<a@b> BODY=7BIT"),
	  .verb = SMTP_MAIL, .body = SMTP_BODY_7BIT, .addr = { .local = "a" } },
	{ .label = "BODY=8BITMIME", LINE("MAIL FROM:<a@b> BODY=8BITMIME"),
	  .verb = SMTP_MAIL, .body = SMTP_BODY_8BITMIME,
	  .addr = { .local = "a" } },
	{ .label = "BODY=BINARYMIME", LINE("MAIL FROM:<a@b> BODY=BINARYMIME"),
	  .verb = SMTP_MAIL, .body = SMTP_BODY_BINARYMIME,
	  .addr = { .local = "a" } },
	{ .label = "body=8bitmime lower case", LINE("MAIL FROM:<a@b> body=8bitmime"),
	  .verb = SMTP_MAIL, .body = SMTP_BODY_8BITMIME,
	  .addr = { .local = "a" } },
	{ .label = "BODY unknown value", LINE("MAIL FROM:<a@b> BODY=9BIT"),
	  .reply = R_PARAM_VALUE },
	{ .label = "BODY empty value", LINE("MAIL FROM:<a@b> BODY="),
	  .reply = R_PARAM_VALUE },
	{ .label = "BODY without =", LINE("MAIL FROM:<a@b> BODY"),
	  .reply = R_PARAM_VALUE },
	{ .label = "BODY given twice",
	  LINE("MAIL FROM:<a@b> BODY=7BIT BODY=8BITMIME"),
	  .reply = R_PARAM_VALUE },
	{ .label = "SMTPUTF8", LINE("MAIL FROM:<a@b> SMTPUTF8"),
	  .verb = SMTP_MAIL, .smtputf8 = true, .addr = { .local = "a" } },
	{ .label = "smtputf8 lower case", LINE("MAIL FROM:<a@b> smtputf8"),
	  .verb = SMTP_MAIL, .smtputf8 = true, .addr = { .local = "a" } },
	{ .label = "SMTPUTF8 with a value", LINE("MAIL FROM:<a@b> SMTPUTF8=yes"),
	  .reply = R_PARAM_VALUE },
	{ .label = "SMTPUTF8 given twice",
	  LINE("MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8"), .reply = R_PARAM_VALUE },
	{ .label = "SIZE BODY SMTPUTF8 together",
	  LINE("MAIL FROM:<a@b> SIZE=123 BODY=8BITMIME SMTPUTF8"),
	  .verb = SMTP_MAIL, .has_size = true, .size = 123,
	  .body = SMTP_BODY_8BITMIME, .smtputf8 = true,
	  .addr = { .local = "a", .domain = "b" } },
	{ .label = "parameters separated by tabs and spaces",
	  LINE("MAIL FROM:<a@b>\tSIZE=5  \tBODY=7BIT "), .verb = SMTP_MAIL,
	  .has_size = true, .size = 5, .addr = { .local = "a" } },
	{ .label = "AUTH=<> accepted", LINE("MAIL FROM:<a@b> AUTH=<>"),
	  .verb = SMTP_MAIL, .addr = { .local = "a" } },
	{ .label = "AUTH=xtext accepted",
	  LINE("MAIL FROM:<a@b> AUTH=user+40example.com"), .verb = SMTP_MAIL,
	  .addr = { .local = "a" } },
	{ .label = "AUTH empty value", LINE("MAIL FROM:<a@b> AUTH="),
	  .reply = R_PARAM_VALUE },
	{ .label = "AUTH truncated hexchar", LINE("MAIL FROM:<a@b> AUTH=a+4"),
	  .reply = R_PARAM_VALUE },
	{ .label = "AUTH bad hexchar", LINE("MAIL FROM:<a@b> AUTH=a+zz"),
	  .reply = R_PARAM_VALUE },
	{ .label = "unknown keyword", LINE("MAIL FROM:<a@b> FOO"),
	  .reply = R_PARAM },
	{ .label = "empty keyword", LINE("MAIL FROM:<a@b> =x"),
	  .reply = R_PARAM },
	{ .label = "first bad parameter wins (value)",
	  LINE("MAIL FROM:<a@b> SIZE=abc FOO"), .reply = R_PARAM_VALUE },
	{ .label = "first bad parameter wins (keyword)",
	  LINE("MAIL FROM:<a@b> FOO SIZE=abc"), .reply = R_PARAM },

	/* MAIL: UTF-8 */
	{ .label = "MAIL UTF-8 local with SMTPUTF8",
	  LINE("MAIL FROM:<" U_UE "@b> SMTPUTF8"), .verb = SMTP_MAIL,
	  .smtputf8 = true,
	  .addr = { .local = U_UE, .domain = "b", .utf8 = true } },
	{ .label = "MAIL UTF-8 local without SMTPUTF8",
	  LINE("MAIL FROM:<" U_UE "@b>"), .reply = R_NEED_UTF8 },
	{ .label = "MAIL UTF-8 domain without SMTPUTF8",
	  LINE("MAIL FROM:<a@b" U_UE ".example>"), .reply = R_NEED_UTF8 },
	{ .label = "MAIL UTF-8 without SMTPUTF8 but with SIZE",
	  LINE("MAIL FROM:<" U_UE "@b> SIZE=1"), .reply = R_NEED_UTF8 },
	{ .label = "MAIL truncated UTF-8",
	  LINE("MAIL FROM:<\xc3@b> SMTPUTF8"), .reply = R_BAD_SENDER },
	{ .label = "MAIL overlong UTF-8",
	  LINE("MAIL FROM:<\xc0\xaf@b> SMTPUTF8"), .reply = R_BAD_SENDER },

	/* RCPT */
	{ .label = "RCPT plain", LINE("RCPT TO:<x@y.example>"),
	  .verb = SMTP_RCPT,
	  .addr = { .local = "x", .local_plain = "x", .domain = "y.example" } },
	{ .label = "rcpt to lower case", LINE("rcpt to:<x@y>"),
	  .verb = SMTP_RCPT, .addr = { .local = "x", .domain = "y" } },
	{ .label = "RCPT space after colon", LINE("RCPT TO: <x@y>"),
	  .verb = SMTP_RCPT, .addr = { .local = "x", .domain = "y" } },
	{ .label = "RCPT <Postmaster>", LINE("RCPT TO:<Postmaster>"),
	  .verb = SMTP_RCPT,
	  .addr = { .local = "Postmaster", .local_plain = "Postmaster",
	            .domain = "" } },
	{ .label = "RCPT <postMASTER> keeps case", LINE("RCPT TO:<postMASTER>"),
	  .verb = SMTP_RCPT, .addr = { .local = "postMASTER", .domain = "" } },
	{ .label = "RCPT <Postmaster@domain>",
	  LINE("RCPT TO:<Postmaster@Y.example>"), .verb = SMTP_RCPT,
	  .addr = { .local = "Postmaster", .domain = "y.example" } },
	{ .label = "RCPT quoted \"Postmaster\" needs a domain",
	  LINE("RCPT TO:<\"Postmaster\">"), .reply = R_BAD_RCPT },
	{ .label = "RCPT <> refused", LINE("RCPT TO:<>"), .reply = R_BAD_RCPT },
	{ .label = "RCPT missing brackets", LINE("RCPT TO:x@y"),
	  .reply = R_BAD_RCPT },
	{ .label = "RCPT trailing garbage", LINE("RCPT TO:<x@y>garbage"),
	  .reply = R_BAD_RCPT },
	{ .label = "RCPT bad domain", LINE("RCPT TO:<x@-y>"),
	  .reply = R_BAD_RCPT },
	{ .label = "RCPT SIZE is not a RCPT parameter",
	  LINE("RCPT TO:<x@y> SIZE=1"), .reply = R_PARAM },
	{ .label = "RCPT FROM:", LINE("RCPT FROM:<x@y>"), .reply = R_RCPT },
	{ .label = "RCPT TO without colon", LINE("RCPT TO <x@y>"),
	  .reply = R_RCPT },
	{ .label = "RCPT alone", LINE("RCPT"), .reply = R_RCPT },
	{ .label = "RCPT UTF-8 accepted (session checks SMTPUTF8)",
	  LINE("RCPT TO:<" U_UE "@y>"), .verb = SMTP_RCPT,
	  .addr = { .local = U_UE, .domain = "y", .utf8 = true } },
	{ .label = "RCPT malformed UTF-8", LINE("RCPT TO:<\xed\xa0\x80@y>"),
	  .reply = R_BAD_RCPT },
	{ .label = "RCPT relay trick user%other@local",
	  LINE("RCPT TO:<user%other@local>"), .verb = SMTP_RCPT,
	  .addr = { .local = "user%other", .local_plain = "user%other",
	            .domain = "local" } },
	{ .label = "RCPT relay trick \"user@other\"@local",
	  LINE("RCPT TO:<\"user@other\"@local>"), .verb = SMTP_RCPT,
	  .addr = { .local = "\"user@other\"", .local_plain = "user@other",
	            .domain = "local", .quoted = true } },
	{ .label = "RCPT relay trick @local:user@other",
	  LINE("RCPT TO:<@local:user@other>"), .verb = SMTP_RCPT,
	  .addr = { .local = "user", .local_plain = "user",
	            .domain = "other" } },
	{ .label = "RCPT relay trick other!user@local",
	  LINE("RCPT TO:<other!user@local>"), .verb = SMTP_RCPT,
	  .addr = { .local = "other!user", .local_plain = "other!user",
	            .domain = "local" } },
	{ .label = "RCPT IPv4 literal", LINE("RCPT TO:<x@[192.0.2.7]>"),
	  .verb = SMTP_RCPT,
	  .addr = { .local = "x", .domain = "[192.0.2.7]", .literal = true } },

	/* DATA, RSET, QUIT, STARTTLS: no argument */
	{ .label = "DATA", LINE("DATA"), .verb = SMTP_DATA },
	{ .label = "data lower case", LINE("data"), .verb = SMTP_DATA },
	{ .label = "DATA trailing space", LINE("DATA "), .verb = SMTP_DATA },
	{ .label = "DATA with argument", LINE("DATA now"), .reply = R_DATA },
	{ .label = "DATA glued", LINE("DATAX"), .reply = R_UNKNOWN },
	{ .label = "RSET", LINE("RSET"), .verb = SMTP_RSET },
	{ .label = "rset lower case", LINE("rset"), .verb = SMTP_RSET },
	{ .label = "RSET with argument", LINE("RSET all"), .reply = R_RSET },
	{ .label = "QUIT", LINE("QUIT"), .verb = SMTP_QUIT },
	{ .label = "QuIt mixed case", LINE("QuIt"), .verb = SMTP_QUIT },
	{ .label = "QUIT with argument", LINE("QUIT now"), .reply = R_QUIT },
	{ .label = "STARTTLS", LINE("STARTTLS"), .verb = SMTP_STARTTLS },
	{ .label = "starttls lower case", LINE("starttls"),
	  .verb = SMTP_STARTTLS },
	{ .label = "STARTTLS with argument", LINE("STARTTLS now"),
	  .reply = R_STARTTLS },

	/* BDAT */
	{ .label = "BDAT size", LINE("BDAT 123"), .verb = SMTP_BDAT,
	  .chunk_size = 123 },
	{ .label = "BDAT 0 LAST", LINE("BDAT 0 LAST"), .verb = SMTP_BDAT,
	  .last = true },
	{ .label = "bdat lower case last", LINE("bdat 5 last"),
	  .verb = SMTP_BDAT, .chunk_size = 5, .last = true },
	{ .label = "BDAT extra spaces", LINE("BDAT  7   LAST "),
	  .verb = SMTP_BDAT, .chunk_size = 7, .last = true },
	{ .label = "BDAT UINT64_MAX", LINE("BDAT 18446744073709551615 LAST"),
	  .verb = SMTP_BDAT, .chunk_size = UINT64_MAX, .last = true },
	{ .label = "BDAT UINT64_MAX+1", LINE("BDAT 18446744073709551616"),
	  .reply = R_BDAT },
	{ .label = "BDAT without size", LINE("BDAT"), .reply = R_BDAT },
	{ .label = "BDAT LAST without size", LINE("BDAT LAST"),
	  .reply = R_BDAT },
	{ .label = "BDAT negative", LINE("BDAT -1"), .reply = R_BDAT },
	{ .label = "BDAT plus sign", LINE("BDAT +1"), .reply = R_BDAT },
	{ .label = "BDAT trailing letter", LINE("BDAT 1x"), .reply = R_BDAT },
	{ .label = "BDAT wrong end marker", LINE("BDAT 10 FIRST"),
	  .reply = R_BDAT },
	{ .label = "BDAT words after LAST", LINE("BDAT 10 LAST extra"),
	  .reply = R_BDAT },

	/* NOOP, VRFY, EXPN, HELP, AUTH: optional text */
	{ .label = "NOOP", LINE("NOOP"), .verb = SMTP_NOOP, .arg = "" },
	{ .label = "NOOP with text", LINE("NOOP hello  world"),
	  .verb = SMTP_NOOP, .arg = "hello  world" },
	{ .label = "NOOP control octet", LINE("NOOP \x1b[0m"),
	  .reply = R_NOOP },
	{ .label = "VRFY user", LINE("VRFY postmaster"), .verb = SMTP_VRFY,
	  .arg = "postmaster" },
	{ .label = "VRFY bracketed", LINE("VRFY <a@b>"), .verb = SMTP_VRFY,
	  .arg = "<a@b>" },
	{ .label = "VRFY empty (session decides)", LINE("VRFY"),
	  .verb = SMTP_VRFY, .arg = "" },
	{ .label = "VRFY DEL octet", LINE("VRFY a\x7f"), .reply = R_VRFY },
	{ .label = "EXPN list", LINE("EXPN staff"), .verb = SMTP_EXPN,
	  .arg = "staff" },
	{ .label = "EXPN empty", LINE("expn"), .verb = SMTP_EXPN, .arg = "" },
	{ .label = "EXPN NUL octet", LINE("EXPN a\0b"), .reply = R_EXPN },
	{ .label = "HELP", LINE("HELP"), .verb = SMTP_HELP, .arg = "" },
	{ .label = "HELP topic", LINE("help MAIL"), .verb = SMTP_HELP,
	  .arg = "MAIL" },
	{ .label = "HELP control octet", LINE("HELP \x02"), .reply = R_HELP },
	{ .label = "AUTH PLAIN initial response",
	  LINE("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q="), .verb = SMTP_AUTH,
	  .arg = "PLAIN dGVzdAB0ZXN0AHRlc3Q=" },
	{ .label = "AUTH LOGIN", LINE("auth LOGIN"), .verb = SMTP_AUTH,
	  .arg = "LOGIN" },
	{ .label = "AUTH empty (session decides)", LINE("AUTH"),
	  .verb = SMTP_AUTH, .arg = "" },
	{ .label = "AUTH control octet", LINE("AUTH PLAIN \x03"),
	  .reply = R_AUTH },

	/* Unknown */
	{ .label = "empty line", LINE(""), .reply = R_UNKNOWN },
	{ .label = "only spaces", LINE("   "), .reply = R_UNKNOWN },
	{ .label = "unknown verb", LINE("FOO bar"), .reply = R_UNKNOWN },
	{ .label = "XCLIENT not supported", LINE("XCLIENT ADDR=192.0.2.1"),
	  .reply = R_UNKNOWN },
	{ .label = "HTTP request", LINE("GET / HTTP/1.0"), .reply = R_UNKNOWN },
	{ .label = "HELO glued to argument", LINE("HELOx"), .reply = R_UNKNOWN },
	{ .label = "8-bit verb", LINE("\x80\x80 x"), .reply = R_UNKNOWN },
	{ .label = "NUL verb", LINE("\0DATA"), .reply = R_UNKNOWN },
	{ .label = "verb with NUL", LINE("DATA\0"), .reply = R_UNKNOWN },
	{ .label = "verb prefix", LINE("MAI FROM:<a@b>"), .reply = R_UNKNOWN },
};

static bool is_path_verb(enum smtp_verb v)
{
	return v == SMTP_MAIL || v == SMTP_RCPT;
}

static void run_cmd_case(const struct cmd_case *c)
{
	struct smtp_cmd cmd;
	const char *reply = "(unset)";
	struct why_buf w = { .used = 0 };
	int rc;

	rc = smtp_parse_command(c->line, c->len, &cmd, &reply);
	if (c->reply) {
		if (rc != -1)
			why_add(&w, "rc %d, want -1; ", rc);
		check_str(&w, "reply", reply, c->reply);
		report("command", c->label, &w);
		return;
	}
	if (rc != 0) {
		why_add(&w, "rc %d, reply '%s'; ", rc, reply ? reply : "(null)");
		report("command", c->label, &w);
		return;
	}
	if (reply)
		why_add(&w, "reply set on success: '%s'; ", reply);
	check_u64(&w, "verb", cmd.verb, c->verb);
	check_str(&w, "arg", cmd.arg, c->arg);
	if (is_path_verb(c->verb))
		check_addr(&w, &cmd.addr, &c->addr);
	check_u64(&w, "has_size", cmd.has_size, c->has_size);
	check_u64(&w, "size", cmd.size, c->size);
	check_u64(&w, "body", cmd.body, c->body);
	check_u64(&w, "smtputf8", cmd.smtputf8, c->smtputf8);
	check_u64(&w, "chunk_size", cmd.chunk_size, c->chunk_size);
	check_u64(&w, "last", cmd.last, c->last);
	report("command", c->label, &w);
}

/* ------------------------------------------------------------------ */
/* DSN parameters (RFC 3461): RET, ENVID on MAIL; NOTIFY, ORCPT on RCPT */
/* ------------------------------------------------------------------ */

struct dsn_case {
	const char *label;
	const char *line;
	size_t len;
	const char *reply;              /* NULL: must parse */
	int ret;
	const char *envid;
	unsigned notify;
	const char *orcpt;
};

#define NS SMTP_NOTIFY_SUCCESS
#define NF SMTP_NOTIFY_FAILURE
#define ND SMTP_NOTIFY_DELAY
#define NN SMTP_NOTIFY_NEVER

static const struct dsn_case dsn_cases[] = {
	{ .label = "no DSN parameters", LINE("MAIL FROM:<a@b>"), .envid = "" },
	{ .label = "RET=FULL", LINE("MAIL FROM:<a@b> RET=FULL"), .ret = SMTP_RET_FULL, .envid = "" },
	{ .label = "RET=hdrs case-insensitive", LINE("MAIL FROM:<a@b> ret=hdrs"),
	  .ret = SMTP_RET_HDRS, .envid = "" },
	{ .label = "RET=ALL refused", LINE("MAIL FROM:<a@b> RET=ALL"), .reply = R_PARAM_VALUE },
	{ .label = "RET without value", LINE("MAIL FROM:<a@b> RET"), .reply = R_PARAM_VALUE },
	{ .label = "RET twice", LINE("MAIL FROM:<a@b> RET=FULL RET=HDRS"), .reply = R_PARAM_VALUE },
	{ .label = "ENVID kept as xtext", LINE("MAIL FROM:<a@b> ENVID=QQ314159+2B1"),
	  .envid = "QQ314159+2B1" },
	{ .label = "ENVID with RET and SIZE", LINE("MAIL FROM:<a@b> SIZE=10 RET=HDRS ENVID=x"),
	  .ret = SMTP_RET_HDRS, .envid = "x" },
	{ .label = "ENVID empty", LINE("MAIL FROM:<a@b> ENVID="), .reply = R_PARAM_VALUE },
	{ .label = "ENVID bad xtext", LINE("MAIL FROM:<a@b> ENVID=a+2g"), .reply = R_PARAM_VALUE },
	{ .label = "ENVID lower-case hex is not xtext", LINE("MAIL FROM:<a@b> ENVID=a+2b"),
	  .reply = R_PARAM_VALUE },
	{ .label = "ENVID twice", LINE("MAIL FROM:<a@b> ENVID=a ENVID=b"), .reply = R_PARAM_VALUE },
	{ .label = "ENVID of 100 octets",
	  LINE("MAIL FROM:<a@b> ENVID=0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"),
	  .envid = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789" },
	{ .label = "ENVID of 101 octets",
	  LINE("MAIL FROM:<a@b> ENVID=01234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890"),
	  .reply = R_PARAM_VALUE },
	{ .label = "NOTIFY on MAIL is not a MAIL parameter", LINE("MAIL FROM:<a@b> NOTIFY=NEVER"),
	  .reply = R_PARAM },
	{ .label = "RCPT without DSN", LINE("RCPT TO:<x@y>"), .orcpt = "" },
	{ .label = "NOTIFY=NEVER", LINE("RCPT TO:<x@y> NOTIFY=NEVER"), .notify = NN, .orcpt = "" },
	{ .label = "NOTIFY=SUCCESS", LINE("RCPT TO:<x@y> NOTIFY=SUCCESS"), .notify = NS, .orcpt = "" },
	{ .label = "NOTIFY list", LINE("RCPT TO:<x@y> NOTIFY=success,FAILURE,Delay"),
	  .notify = NS | NF | ND, .orcpt = "" },
	{ .label = "NOTIFY=FAILURE,DELAY", LINE("RCPT TO:<x@y> NOTIFY=FAILURE,DELAY"),
	  .notify = NF | ND, .orcpt = "" },
	{ .label = "NOTIFY NEVER with another", LINE("RCPT TO:<x@y> NOTIFY=NEVER,SUCCESS"),
	  .reply = R_PARAM_VALUE },
	{ .label = "NOTIFY repeated word", LINE("RCPT TO:<x@y> NOTIFY=SUCCESS,SUCCESS"),
	  .reply = R_PARAM_VALUE },
	{ .label = "NOTIFY unknown word", LINE("RCPT TO:<x@y> NOTIFY=ALWAYS"), .reply = R_PARAM_VALUE },
	{ .label = "NOTIFY empty", LINE("RCPT TO:<x@y> NOTIFY="), .reply = R_PARAM_VALUE },
	{ .label = "NOTIFY trailing comma", LINE("RCPT TO:<x@y> NOTIFY=SUCCESS,"), .reply = R_PARAM_VALUE },
	{ .label = "NOTIFY twice", LINE("RCPT TO:<x@y> NOTIFY=SUCCESS NOTIFY=DELAY"),
	  .reply = R_PARAM_VALUE },
	{ .label = "ORCPT kept as given", LINE("RCPT TO:<x@y> ORCPT=rfc822;a+2Bb@c.example"),
	  .orcpt = "rfc822;a+2Bb@c.example" },
	{ .label = "ORCPT and NOTIFY", LINE("RCPT TO:<x@y> NOTIFY=FAILURE ORCPT=rfc822;x@y"),
	  .notify = NF, .orcpt = "rfc822;x@y" },
	{ .label = "ORCPT without type", LINE("RCPT TO:<x@y> ORCPT=x@y"), .reply = R_PARAM_VALUE },
	{ .label = "ORCPT empty type", LINE("RCPT TO:<x@y> ORCPT=;x@y"), .reply = R_PARAM_VALUE },
	{ .label = "ORCPT empty address", LINE("RCPT TO:<x@y> ORCPT=rfc822;"), .reply = R_PARAM_VALUE },
	{ .label = "ORCPT bad xtext", LINE("RCPT TO:<x@y> ORCPT=rfc822;a+4"), .reply = R_PARAM_VALUE },
	{ .label = "ORCPT twice", LINE("RCPT TO:<x@y> ORCPT=rfc822;a@b ORCPT=rfc822;c@d"),
	  .reply = R_PARAM_VALUE },
	{ .label = "RET is not a RCPT parameter", LINE("RCPT TO:<x@y> RET=FULL"), .reply = R_PARAM },
};

static void run_dsn_case(const struct dsn_case *c)
{
	struct smtp_cmd cmd;
	const char *reply = "(unset)";
	struct why_buf w = { .used = 0 };
	int rc = smtp_parse_command(c->line, c->len, &cmd, &reply);
	if (c->reply) {
		if (rc != -1)
			why_add(&w, "rc %d, want -1; ", rc);
		check_str(&w, "reply", reply, c->reply);
	} else if (rc != 0) {
		why_add(&w, "rc %d, reply '%s'; ", rc, reply ? reply : "(null)");
	} else {
		check_u64(&w, "ret", (uint64_t)cmd.ret, (uint64_t)c->ret);
		check_u64(&w, "notify", cmd.notify, c->notify);
		check_str(&w, "envid", cmd.envid, c->envid);
		check_str(&w, "orcpt", cmd.orcpt, c->orcpt);
	}
	report("dsn", c->label, &w);
}

struct xtext_case {
	const char *label;
	const char *in;
	int want_len;                   /* -1: refused */
	const char *out;
};

static const struct xtext_case xtext_cases[] = {
	{ .label = "plain", .in = "abc", .want_len = 3, .out = "abc" },
	{ .label = "plus", .in = "a+2Bb", .want_len = 3, .out = "a+b" },
	{ .label = "space and equals", .in = "+20+3D", .want_len = 2, .out = " =" },
	{ .label = "truncated", .in = "a+2", .want_len = -1 },
	{ .label = "raw equals", .in = "a=b", .want_len = -1 },
};

static void run_xtext_case(const struct xtext_case *c)
{
	char out[16];
	struct why_buf w = { .used = 0 };
	int n = smtp_xtext_decode(c->in, strlen(c->in), out, sizeof out);
	check_u64(&w, "length", (uint64_t)(int64_t)n, (uint64_t)(int64_t)c->want_len);
	if (n >= 0 && c->out)
		check_str(&w, "out", out, c->out);
	report("xtext", c->label, &w);
}

/* ------------------------------------------------------------------ */
/* Paths (smtp_parse_path)                                            */
/* ------------------------------------------------------------------ */

struct path_case {
	const char *label;
	const char *path;
	size_t len;
	size_t avail;                   /* octets passed; 0: len */
	bool allow_null, allow_utf8;
	const char *why;                /* NULL: must parse */
	const char *rest;               /* what *end points at; NULL: "" */
	struct want_addr addr;
};

static const struct path_case path_cases[] = {
	/* Dot-string local parts */
	{ .label = "simple", PATH("<a@b>"),
	  .addr = { .local = "a", .local_plain = "a", .domain = "b" } },
	{ .label = "dotted local and domain", PATH("<a.b.c@mail.example.com>"),
	  .addr = { .local = "a.b.c", .local_plain = "a.b.c",
	            .domain = "mail.example.com" } },
	{ .label = "case kept in local, lowered in domain",
	  PATH("<John.Doe@Example.COM>"),
	  .addr = { .local = "John.Doe", .domain = "example.com" } },
	{ .label = "every atext special",
	  PATH("<!#$%&'*+-/=?^_`{|}~@x>"),
	  .addr = { .local = "!#$%&'*+-/=?^_`{|}~", .domain = "x" } },
	{ .label = "leading dot", PATH("<.a@b>"), .why = "bad local part" },
	{ .label = "trailing dot", PATH("<a.@b>"), .why = "bad local part" },
	{ .label = "double dot", PATH("<a..b@c>"), .why = "bad local part" },
	{ .label = "parenthesis not atext", PATH("<a(b)@c>"),
	  .why = "missing @domain" },
	{ .label = "comma not atext", PATH("<a,b@c>"), .why = "missing @domain" },
	{ .label = "stray quote in dot-string", PATH("<a\"b@c>"),
	  .why = "missing @domain" },
	{ .label = "no @domain", PATH("<user>"), .why = "missing @domain" },
	{ .label = "postmasters is not Postmaster", PATH("<postmasters>"),
	  .why = "missing @domain" },

	/* Quoted-string local parts */
	{ .label = "quoted with space", PATH("<\"a b\"@c>"),
	  .addr = { .local = "\"a b\"", .local_plain = "a b", .domain = "c",
	            .quoted = true } },
	{ .label = "quoted with escaped quote", PATH("<\"a\\\"b\"@c>"),
	  .addr = { .local = "\"a\\\"b\"", .local_plain = "a\"b",
	            .domain = "c", .quoted = true } },
	{ .label = "quoted with escaped backslash", PATH("<\"a\\\\b\"@c>"),
	  .addr = { .local = "\"a\\\\b\"", .local_plain = "a\\b",
	            .domain = "c", .quoted = true } },
	{ .label = "quoted with @ inside", PATH("<\"a@b\"@c>"),
	  .addr = { .local = "\"a@b\"", .local_plain = "a@b", .domain = "c",
	            .quoted = true } },
	{ .label = "quoted with escaped ordinary char", PATH("<\"\\a\"@c>"),
	  .addr = { .local = "\"\\a\"", .local_plain = "a", .domain = "c",
	            .quoted = true } },
	{ .label = "quoted with specials", PATH("<\"<>,;:[]\"@c>"),
	  .addr = { .local = "\"<>,;:[]\"", .local_plain = "<>,;:[]",
	            .domain = "c", .quoted = true } },
	{ .label = "empty quoted string", PATH("<\"\"@c>"),
	  .addr = { .local = "\"\"", .local_plain = "", .domain = "c",
	            .quoted = true } },
	{ .label = "unterminated quote", PATH("<\"abc@c>"),
	  .why = "bad local part" },
	{ .label = "text after closing quote", PATH("<\"a\"b@c>"),
	  .why = "missing @domain" },
	{ .label = "control octet in quotes", PATH("<\"a\x01\"@c>"),
	  .why = "bad local part" },
	{ .label = "tab in quotes", PATH("<\"a\tb\"@c>"),
	  .why = "bad local part" },
	{ .label = "quoted-pair of control octet", PATH("<\"a\\\x01\"@c>"),
	  .why = "bad local part" },
	{ .label = "backslash at end of input", PATH("<\"a\\"),
	  .why = "bad local part" },

	/* Source routes */
	{ .label = "source route of two hops", PATH("<@a,@b:user@c>"),
	  .addr = { .local = "user", .local_plain = "user", .domain = "c" } },
	{ .label = "source route of one hop", PATH("<@a.example:u@C.example>"),
	  .addr = { .local = "u", .domain = "c.example" } },
	{ .label = "route hop without @", PATH("<@a,b:user@c>"),
	  .why = "bad source route" },
	{ .label = "route with empty domain", PATH("<@:user@c>"),
	  .why = "bad source route" },
	{ .label = "route without colon", PATH("<@a,@b>"),
	  .why = "bad source route" },
	{ .label = "route domain trailing dot", PATH("<@a.:u@c>"),
	  .why = "bad source route" },
	{ .label = "route with literal", PATH("<@[192.0.2.1]:u@c>"),
	  .why = "bad source route" },
	{ .label = "empty local part", PATH("<@c>"), .why = "bad source route" },
	{ .label = "route then Postmaster", PATH("<@a:Postmaster>"),
	  .why = "missing @domain" },

	/* Postmaster and null */
	{ .label = "<Postmaster>", PATH("<Postmaster>"),
	  .addr = { .local = "Postmaster", .local_plain = "Postmaster",
	            .domain = "" } },
	{ .label = "<POSTMASTER>", PATH("<POSTMASTER>"),
	  .addr = { .local = "POSTMASTER", .domain = "" } },
	{ .label = "quoted Postmaster", PATH("<\"Postmaster\">"),
	  .why = "missing @domain" },
	{ .label = "<> allowed", PATH("<>"), .allow_null = true,
	  .addr = { .null = true, .local = "", .local_plain = "",
	            .domain = "" } },
	{ .label = "<> not allowed", PATH("<>"), .why = "null path not allowed" },

	/* Domains */
	{ .label = "hyphen inside label", PATH("<a@b-c.d>"),
	  .addr = { .domain = "b-c.d" } },
	{ .label = "label starts with digit", PATH("<a@123.example>"),
	  .addr = { .domain = "123.example" } },
	{ .label = "dotted quad without brackets is a domain",
	  PATH("<a@192.0.2.1>"), .addr = { .domain = "192.0.2.1" } },
	{ .label = "label starts with hyphen", PATH("<a@-b.c>"),
	  .why = "bad domain" },
	{ .label = "label ends with hyphen", PATH("<a@b-.c>"),
	  .why = "bad domain" },
	{ .label = "empty label", PATH("<a@b..c>"), .why = "bad domain" },
	{ .label = "trailing dot", PATH("<a@b.>"), .why = "bad domain" },
	{ .label = "leading dot", PATH("<a@.b>"), .why = "bad domain" },
	{ .label = "underscore", PATH("<a@b_c.d>"), .why = "missing >" },
	{ .label = "empty domain", PATH("<a@>"), .why = "bad domain" },
	{ .label = "space in domain", PATH("<a@b c>"), .why = "missing >" },
	{ .label = "two @", PATH("<a@b@c>"), .why = "missing >" },

	/* Address literals */
	{ .label = "IPv4 literal", PATH("<a@[192.0.2.1]>"),
	  .addr = { .local = "a", .domain = "[192.0.2.1]", .literal = true } },
	{ .label = "IPv6 literal, hex lowered", PATH("<a@[IPv6:2001:DB8::1]>"),
	  .addr = { .domain = "[IPv6:2001:db8::1]", .literal = true } },
	{ .label = "IPv6 tag case-insensitive", PATH("<a@[ipv6:::1]>"),
	  .addr = { .domain = "[IPv6:::1]", .literal = true } },
	{ .label = "IPv6 with embedded IPv4",
	  PATH("<a@[IPv6:::ffff:192.0.2.1]>"),
	  .addr = { .domain = "[IPv6:::ffff:192.0.2.1]", .literal = true } },
	{ .label = "IPv6 full form",
	  PATH("<a@[IPv6:2001:db8:0:0:0:0:0:1]>"),
	  .addr = { .domain = "[IPv6:2001:db8:0:0:0:0:0:1]", .literal = true } },
	{ .label = "IPv4 octet 256", PATH("<a@[192.0.2.256]>"),
	  .why = "bad address literal" },
	{ .label = "IPv4 three parts", PATH("<a@[192.0.2]>"),
	  .why = "bad address literal" },
	{ .label = "IPv6 without tag", PATH("<a@[2001:db8::1]>"),
	  .why = "bad address literal" },
	{ .label = "IPv4 under IPv6 tag", PATH("<a@[IPv6:192.0.2.1]>"),
	  .why = "bad address literal" },
	{ .label = "IPv6 bad hex", PATH("<a@[IPv6:2001:db8::g]>"),
	  .why = "bad address literal" },
	{ .label = "IPv6 nine groups", PATH("<a@[IPv6:1:2:3:4:5:6:7:8:9]>"),
	  .why = "bad address literal" },
	{ .label = "IPv6 two ::", PATH("<a@[IPv6:1::2::3]>"),
	  .why = "bad address literal" },
	{ .label = "IPv6 zone id", PATH("<a@[IPv6:fe80::1%eth0]>"),
	  .why = "bad address literal" },
	{ .label = "empty literal", PATH("<a@[]>"),
	  .why = "bad address literal" },
	{ .label = "empty IPv6 literal", PATH("<a@[IPv6:]>"),
	  .why = "bad address literal" },
	{ .label = "unclosed literal", PATH("<a@[192.0.2.1>"),
	  .why = "bad address literal" },
	{ .label = "general address literal", PATH("<a@[x-tag:foo]>"),
	  .why = "bad address literal" },
	{ .label = "literal then junk", PATH("<a@[192.0.2.1]x>"),
	  .why = "missing >" },

	/* UTF-8 */
	{ .label = "UTF-8 local part", PATH("<" U_UE "@example.com>"),
	  .allow_utf8 = true,
	  .addr = { .local = U_UE, .local_plain = U_UE,
	            .domain = "example.com", .utf8 = true } },
	{ .label = "UTF-8 local part not allowed", PATH("<" U_UE "@example.com>"),
	  .why = "non-ASCII without SMTPUTF8" },
	{ .label = "UTF-8 domain not allowed", PATH("<a@" U_UE ".example>"),
	  .why = "non-ASCII without SMTPUTF8" },
	{ .label = "UTF-8 in quotes not allowed", PATH("<\"" U_UE "\"@b>"),
	  .why = "non-ASCII without SMTPUTF8" },
	{ .label = "CJK local and domain",
	  PATH("<" U_CJK1 U_CJK2 "@" U_CJK3 U_CJK4 ".example>"),
	  .allow_utf8 = true,
	  .addr = { .local = U_CJK1 U_CJK2,
	            .domain = U_CJK3 U_CJK4 ".example", .utf8 = true } },
	{ .label = "UTF-8 domain: ASCII lowered, rest kept",
	  PATH("<a@B" U_UE_CAP "cher.Example>"), .allow_utf8 = true,
	  .addr = { .domain = "b" U_UE_CAP "cher.example", .utf8 = true } },
	{ .label = "UTF-8 in quoted string", PATH("<\"" U_E " x\"@b>"),
	  .allow_utf8 = true,
	  .addr = { .local = "\"" U_E " x\"", .local_plain = U_E " x",
	            .domain = "b", .quoted = true, .utf8 = true } },
	{ .label = "4-octet UTF-8", PATH("<" U_EMOJI "@b>"), .allow_utf8 = true,
	  .addr = { .local = U_EMOJI, .utf8 = true } },
	{ .label = "lone continuation octet", PATH("<\x80@b>"),
	  .allow_utf8 = true, .why = "malformed UTF-8" },
	{ .label = "truncated 2-octet sequence", PATH("<a\xc3@b>"),
	  .allow_utf8 = true, .why = "malformed UTF-8" },
	{ .label = "truncated 3-octet sequence", PATH("<\xe2\x82@b>"),
	  .allow_utf8 = true, .why = "malformed UTF-8" },
	{ .label = "overlong 2-octet slash", PATH("<\xc0\xaf@b>"),
	  .allow_utf8 = true, .why = "malformed UTF-8" },
	{ .label = "overlong 3-octet slash", PATH("<\xe0\x80\xaf@b>"),
	  .allow_utf8 = true, .why = "malformed UTF-8" },
	{ .label = "overlong 4-octet", PATH("<\xf0\x80\x80\xaf@b>"),
	  .allow_utf8 = true, .why = "malformed UTF-8" },
	{ .label = "surrogate U+D800", PATH("<\xed\xa0\x80@b>"),
	  .allow_utf8 = true, .why = "malformed UTF-8" },
	{ .label = "beyond U+10FFFF", PATH("<\xf4\x90\x80\x80@b>"),
	  .allow_utf8 = true, .why = "malformed UTF-8" },
	{ .label = "octet 0xFF", PATH("<\xff@b>"), .allow_utf8 = true,
	  .why = "malformed UTF-8" },
	{ .label = "malformed UTF-8 in domain", PATH("<a@b\xc3.c>"),
	  .allow_utf8 = true, .why = "malformed UTF-8" },
	{ .label = "malformed UTF-8 in quotes", PATH("<\"\xc3\"@b>"),
	  .allow_utf8 = true, .why = "malformed UTF-8" },
	{ .label = "sequence cut by the length", PATH("<" U_UE "@b>"),
	  .avail = 2, .allow_utf8 = true, .why = "malformed UTF-8" },

	/* Brackets, end pointer and available length */
	{ .label = "missing <", PATH("a@b>"), .why = "missing <" },
	{ .label = "missing >", PATH("<a@b"), .why = "missing >" },
	{ .label = "empty input", PATH(""), .why = "missing <" },
	{ .label = "only <", PATH("<"), .why = "bad local part" },
	{ .label = "> beyond the given length", PATH("<a@b>"), .avail = 4,
	  .why = "missing >" },
	{ .label = "end points after >", PATH("<a@b> SIZE=1"),
	  .rest = " SIZE=1", .addr = { .local = "a", .domain = "b" } },
	{ .label = "end points at garbage", PATH("<a@b>x"), .rest = "x",
	  .addr = { .local = "a", .domain = "b" } },
	{ .label = "end after <>", PATH("<> BODY=7BIT"), .allow_null = true,
	  .rest = " BODY=7BIT", .addr = { .null = true } },

	/* Relay tricks: they parse; policy refuses them elsewhere */
	{ .label = "relay trick user%other@local", PATH("<user%other@local>"),
	  .addr = { .local = "user%other", .local_plain = "user%other",
	            .domain = "local" } },
	{ .label = "relay trick \"user@other\"@local",
	  PATH("<\"user@other\"@local>"),
	  .addr = { .local = "\"user@other\"", .local_plain = "user@other",
	            .domain = "local", .quoted = true } },
	{ .label = "relay trick @local:user@other", PATH("<@local:user@other>"),
	  .addr = { .local = "user", .local_plain = "user",
	            .domain = "other" } },
	{ .label = "relay trick other!user@local", PATH("<other!user@local>"),
	  .addr = { .local = "other!user", .local_plain = "other!user",
	            .domain = "local" } },
	{ .label = "relay trick \"user%other\"@local",
	  PATH("<\"user%other\"@local>"),
	  .addr = { .local = "\"user%other\"", .local_plain = "user%other",
	            .domain = "local", .quoted = true } },
};

static void run_path_case(const struct path_case *c)
{
	struct smtp_addr a;
	const char *end = NULL, *why = "(unset)";
	struct why_buf w = { .used = 0 };
	size_t avail = c->avail ? c->avail : c->len;
	int rc;

	memset(&a, 0x5a, sizeof(a));    /* parser must set every field */
	rc = smtp_parse_path(c->path, avail, c->allow_null, c->allow_utf8, &a,
	                     &end, &why);
	if (c->why) {
		if (rc != -1)
			why_add(&w, "rc %d, want -1; ", rc);
		check_str(&w, "why", why, c->why);
		report("path", c->label, &w);
		return;
	}
	if (rc != 0) {
		why_add(&w, "rc %d, why '%s'; ", rc, why ? why : "(null)");
		report("path", c->label, &w);
		return;
	}
	if (!end || end < c->path || end > c->path + avail)
		why_add(&w, "end out of range; ");
	else
		check_str(&w, "rest", end, c->rest ? c->rest : "");
	check_addr(&w, &a, &c->addr);
	report("path", c->label, &w);
}

/* ------------------------------------------------------------------ */
/* Length limits (RFC 5321 4.5.3.1), built at run time                */
/* ------------------------------------------------------------------ */

enum len_local { LOCAL_ATOM, LOCAL_QUOTED, LOCAL_UTF8 };

struct len_case {
	const char *label;
	const char *cmd;                /* "MAIL FROM:" / "RCPT TO:"; NULL: path */
	int route;                      /* octets of "@...:"; 0: none */
	int local;                      /* octets of the local part as written */
	enum len_local local_kind;
	int domain;                     /* octets of the domain */
	bool one_label;                 /* domain is a single label */
	const char *want;               /* why or reply; NULL: must parse */
};

static const struct len_case len_cases[] = {
	{ .label = "local part 64 (at limit)", .local = 64, .domain = 10 },
	{ .label = "local part 65", .local = 65, .domain = 10,
	  .want = "local part too long" },
	{ .label = "quoted local part 64 incl. quotes", .local = 64,
	  .local_kind = LOCAL_QUOTED, .domain = 10 },
	{ .label = "quoted local part 65 incl. quotes", .local = 65,
	  .local_kind = LOCAL_QUOTED, .domain = 10,
	  .want = "local part too long" },
	{ .label = "UTF-8 local part 64 octets", .local = 64,
	  .local_kind = LOCAL_UTF8, .domain = 10 },
	{ .label = "UTF-8 local part 66 octets", .local = 66,
	  .local_kind = LOCAL_UTF8, .domain = 10,
	  .want = "local part too long" },
	{ .label = "domain 252 (path exactly 256)", .local = 1, .domain = 252 },
	{ .label = "domain 255 (at domain limit, path 259)", .local = 1,
	  .domain = 255, .want = "path too long" },
	{ .label = "domain 256", .local = 1, .domain = 256,
	  .want = "domain too long" },
	{ .label = "path 256 (at limit)", .local = 64, .domain = 189 },
	{ .label = "path 257", .local = 64, .domain = 190,
	  .want = "path too long" },
	{ .label = "path 256 with source route", .route = 20, .local = 10,
	  .domain = 223 },
	{ .label = "path 257 with source route", .route = 21, .local = 10,
	  .domain = 223, .want = "path too long" },
	{ .label = "label 63 (at limit)", .local = 1, .domain = 63,
	  .one_label = true },
	{ .label = "label 64", .local = 1, .domain = 64, .one_label = true,
	  .want = "bad domain" },
	{ .label = "MAIL local part 64", .cmd = "MAIL FROM:", .local = 64,
	  .domain = 10 },
	{ .label = "MAIL local part 65", .cmd = "MAIL FROM:", .local = 65,
	  .domain = 10, .want = R_LONG_SENDER },
	{ .label = "MAIL domain 256", .cmd = "MAIL FROM:", .local = 1,
	  .domain = 256, .want = R_LONG_SENDER },
	{ .label = "MAIL path 256", .cmd = "MAIL FROM:", .local = 64,
	  .domain = 189 },
	{ .label = "MAIL path 257", .cmd = "MAIL FROM:", .local = 64,
	  .domain = 190, .want = R_LONG_SENDER },
	{ .label = "RCPT local part 64", .cmd = "RCPT TO:", .local = 64,
	  .domain = 10 },
	{ .label = "RCPT local part 65", .cmd = "RCPT TO:", .local = 65,
	  .domain = 10, .want = R_LONG_RCPT },
	{ .label = "RCPT domain 255 (path too long)", .cmd = "RCPT TO:",
	  .local = 1, .domain = 255, .want = R_LONG_RCPT },
	{ .label = "RCPT domain 256", .cmd = "RCPT TO:", .local = 1,
	  .domain = 256, .want = R_LONG_RCPT },
	{ .label = "RCPT path 256", .cmd = "RCPT TO:", .local = 64,
	  .domain = 189 },
	{ .label = "RCPT path 257", .cmd = "RCPT TO:", .local = 64,
	  .domain = 190, .want = R_LONG_RCPT },
	{ .label = "RCPT label 64 is syntax, not length", .cmd = "RCPT TO:",
	  .local = 1, .domain = 64, .one_label = true, .want = R_BAD_RCPT },
};

static char *put_chars(char *p, char ch, int n)
{
	memset(p, ch, (size_t)n);
	return p + n;
}

/* A valid domain of exactly n octets: labels of up to 49 'd's. */
static char *put_domain(char *p, int n)
{
	while (n > 0) {
		int k = n < 49 ? n : 49;

		if (n - k == 1)
			k--;            /* never leave a dot with no label after it */
		p = put_chars(p, 'd', k);
		n -= k;
		if (n > 0) {
			*p++ = '.';
			n--;
		}
	}
	return p;
}

static char *put_local(char *p, const struct len_case *c)
{
	switch (c->local_kind) {
	case LOCAL_ATOM:
		return put_chars(p, 'l', c->local);
	case LOCAL_QUOTED:
		*p++ = '"';
		p = put_chars(p, 'q', c->local - 2);
		*p++ = '"';
		return p;
	case LOCAL_UTF8:
		for (int i = 0; i < c->local / 2; i++) {
			memcpy(p, U_E, 2);
			p += 2;
		}
		return p;
	}
	return p;
}

static size_t build_path(char *buf, const struct len_case *c)
{
	char *p = buf;

	*p++ = '<';
	if (c->route) {
		*p++ = '@';
		p = put_domain(p, c->route - 2);
		*p++ = ':';
	}
	p = put_local(p, c);
	*p++ = '@';
	p = c->one_label ? put_chars(p, 'o', c->domain)
	                 : put_domain(p, c->domain);
	*p++ = '>';
	*p = '\0';
	return (size_t)(p - buf);
}

static void run_len_case(const struct len_case *c)
{
	char path[1024], line[1100];
	struct why_buf w = { .used = 0 };
	const char *got;
	size_t n = build_path(path, c);
	int rc;

	if (c->cmd) {
		struct smtp_cmd cmd;

		snprintf(line, sizeof(line), "%s%s", c->cmd, path);
		rc = smtp_parse_command(line, strlen(line), &cmd, &got);
		if (rc == 0 && strlen(cmd.addr.local) != (size_t)c->local)
			why_add(&w, "local length %zu; ", strlen(cmd.addr.local));
	} else {
		struct smtp_addr a;
		const char *end;

		rc = smtp_parse_path(path, n, false, true, &a, &end, &got);
		if (rc == 0 && (strlen(a.local) != (size_t)c->local ||
		                strlen(a.domain) != (size_t)c->domain))
			why_add(&w, "copied lengths %zu/%zu; ", strlen(a.local),
			        strlen(a.domain));
	}
	if (c->want) {
		if (rc != -1)
			why_add(&w, "rc %d, want -1; ", rc);
		check_str(&w, "error", got, c->want);
	} else if (rc != 0) {
		why_add(&w, "rc %d (%s) for %zu-octet path; ", rc,
		        got ? got : "(null)", n);
	}
	report("length", c->label, &w);
}

/* Over-long lines: the parser's own guard on the arg buffer. */
static void run_line_length_cases(void)
{
	static char line[SMTP_CMD_LINE_MAX + 1];
	struct why_buf w = { .used = 0 };
	struct smtp_cmd cmd;
	const char *reply;
	int rc;

	memcpy(line, "NOOP ", 5);
	memset(line + 5, 'x', sizeof(line) - 5);

	rc = smtp_parse_command(line, SMTP_CMD_LINE_MAX - 1, &cmd, &reply);
	if (rc != 0 || strlen(cmd.arg) != SMTP_CMD_LINE_MAX - 6)
		why_add(&w, "rc %d, arg length %zu; ", rc, strlen(cmd.arg));
	report("line", "NOOP line of SMTP_CMD_LINE_MAX - 1 octets", &w);

	w.used = 0;
	rc = smtp_parse_command(line, SMTP_CMD_LINE_MAX, &cmd, &reply);
	if (rc != -1)
		why_add(&w, "rc %d; ", rc);
	check_str(&w, "reply", rc ? reply : NULL, R_LINE_LONG);
	report("line", "line of SMTP_CMD_LINE_MAX octets", &w);
}

/* Results must not point into the caller's line, and must not leak over. */
static void run_ownership_cases(void)
{
	char line[] = "MAIL FROM:<a@b> SIZE=9";
	struct why_buf w = { .used = 0 };
	struct smtp_cmd cmd;
	const char *reply;

	if (smtp_parse_command(line, strlen(line), &cmd, &reply) != 0)
		why_add(&w, "parse failed; ");
	memset(line, 'Z', strlen(line));
	check_str(&w, "local", cmd.addr.local, "a");
	check_str(&w, "domain", cmd.addr.domain, "b");
	report("ownership", "address copied out of the line", &w);

	w.used = 0;
	if (smtp_parse_command("RCPT TO:<x@y>", 13, &cmd, &reply) != 0)
		why_add(&w, "parse failed; ");
	check_u64(&w, "has_size", cmd.has_size, false);
	check_u64(&w, "size", cmd.size, 0);
	report("ownership", "previous command's fields cleared", &w);

	w.used = 0;
	if (smtp_parse_command("DATA x", 6, &cmd, &reply) != -1)
		why_add(&w, "parse succeeded; ");
	check_u64(&w, "verb kept on error", cmd.verb, SMTP_DATA);
	report("ownership", "verb reported on a syntax error", &w);
}

/* ------------------------------------------------------------------ */
/* smtp_addr_format                                                   */
/* ------------------------------------------------------------------ */

struct format_case {
	const char *label;
	const char *path;
	bool sized;                     /* use size, not the whole buffer */
	size_t size;
	int want_rc;
	const char *want;               /* NULL: only the rc is checked */
};

static const struct format_case format_cases[] = {
	{ .label = "plain", .path = "<a@b>", .want_rc = 3, .want = "a@b" },
	{ .label = "domain lower-cased", .path = "<A@EXAMPLE.COM>",
	  .want_rc = 13, .want = "A@example.com" },
	{ .label = "null", .path = "<>", .want_rc = 0, .want = "" },
	{ .label = "Postmaster without domain", .path = "<Postmaster>",
	  .want_rc = 10, .want = "Postmaster" },
	{ .label = "quoted local part as written", .path = "<\"a b\\\"c\"@d>",
	  .want_rc = 10, .want = "\"a b\\\"c\"@d" },
	{ .label = "source route dropped", .path = "<@r:u@d>",
	  .want_rc = 3, .want = "u@d" },
	{ .label = "literal", .path = "<u@[IPv6:::1]>", .want_rc = 12,
	  .want = "u@[IPv6:::1]" },
	{ .label = "buffer exactly big enough", .path = "<a@b>",
	  .sized = true, .size = 4,
	  .want_rc = 3, .want = "a@b" },
	{ .label = "buffer one short", .path = "<a@b>",
	  .sized = true, .size = 3,
	  .want_rc = -1 },
	{ .label = "null into 1-octet buffer", .path = "<>",
	  .sized = true, .size = 1,
	  .want_rc = 0, .want = "" },
	{ .label = "null into 0-octet buffer", .path = "<>",
	  .sized = true, .size = 0,
	  .want_rc = -1 },
};

static void run_format_case(const struct format_case *c)
{
	struct smtp_addr a;
	const char *end, *why;
	char buf[600];
	struct why_buf w = { .used = 0 };
	size_t size = c->sized ? c->size : sizeof(buf);
	int rc;

	if (smtp_parse_path(c->path, strlen(c->path), true, true, &a, &end,
	                    &why) != 0) {
		why_add(&w, "path did not parse: %s; ", why);
		report("format", c->label, &w);
		return;
	}
	rc = smtp_addr_format(&a, buf, size);
	if (rc != c->want_rc)
		why_add(&w, "rc %d, want %d; ", rc, c->want_rc);
	if (rc >= 0)
		check_str(&w, "text", buf, c->want);
	report("format", c->label, &w);
}

/* ------------------------------------------------------------------ */
/* smtp_verb_name                                                     */
/* ------------------------------------------------------------------ */

struct name_case {
	enum smtp_verb verb;
	const char *want;
};

static const struct name_case name_cases[] = {
	{ .verb = SMTP_UNKNOWN, .want = "UNKNOWN" },
	{ .verb = SMTP_HELO, .want = "HELO" },
	{ .verb = SMTP_EHLO, .want = "EHLO" },
	{ .verb = SMTP_MAIL, .want = "MAIL" },
	{ .verb = SMTP_RCPT, .want = "RCPT" },
	{ .verb = SMTP_DATA, .want = "DATA" },
	{ .verb = SMTP_BDAT, .want = "BDAT" },
	{ .verb = SMTP_RSET, .want = "RSET" },
	{ .verb = SMTP_NOOP, .want = "NOOP" },
	{ .verb = SMTP_QUIT, .want = "QUIT" },
	{ .verb = SMTP_VRFY, .want = "VRFY" },
	{ .verb = SMTP_EXPN, .want = "EXPN" },
	{ .verb = SMTP_HELP, .want = "HELP" },
	{ .verb = SMTP_STARTTLS, .want = "STARTTLS" },
	{ .verb = SMTP_AUTH, .want = "AUTH" },
	{ .verb = (enum smtp_verb)99, .want = "UNKNOWN" },
};

#define N(a) (sizeof(a) / sizeof((a)[0]))


/* ---- robustness: deterministic mutations of every command case -------
 * Each mutated line is copied into a buffer of exactly its length, so
 * that the sanitizer build catches any read past the end.  Invariants:
 * the result is 0 or -1; -1 comes with a 5xx reply; 0 with no reply, a
 * known verb, and a path that formats back within its limits. */

static unsigned long long rng_state = 0x9E3779B97F4A7C15ull;

static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)(rng_state % n);
}

static char interesting(void)
{
	static const char set[] = "<>\"\\@:,.= \t[]()!%+-/0123456789AZaz";
	switch (rnd(4)) {
	case 0:
		return set[rnd(sizeof set - 1)];
	case 1:
		return (char)(0x80 + rnd(0x80));   /* UTF-8 lead and continuation octets */
	case 2:
		return (char)rnd(0x20);            /* controls, NUL included */
	default:
		return (char)rnd(256);
	}
}

static size_t mutate_line(char *b, size_t len, size_t cap)
{
	int edits = 1 + (int)rnd(4);
	for (int e = 0; e < edits; e++) {
		size_t at = len ? rnd((unsigned)len + 1) : 0;
		switch (rnd(5)) {
		case 0:                                     /* replace */
			if (len)
				b[rnd((unsigned)len)] = interesting();
			break;
		case 1:                                     /* insert */
			if (len < cap) {
				memmove(b + at + 1, b + at, len - at);
				b[at] = interesting();
				len++;
			}
			break;
		case 2:                                     /* delete */
			if (at < len) {
				memmove(b + at, b + at + 1, len - at - 1);
				len--;
			}
			break;
		case 3:                                     /* cut */
			len = at;
			break;
		default: {                                  /* repeat a piece */
			size_t n = 1 + rnd(64);
			if (at + n > len)
				n = len - at;
			if (n && len + n <= cap) {
				memmove(b + at + n, b + at, len - at);
				len += n;
			}
			break;
		}
		}
	}
	return len;
}

static void run_mutations(void)
{
	enum { CAP = SMTP_LINE_MAX - 2, RUNS = 200000 };
	char work[CAP];
	long runs = 0, ok = 0, bad = 0;
	const char *first_bad = NULL;
	for (long r = 0; r < RUNS; r++) {
		const struct cmd_case *c = &cmd_cases[rnd(N(cmd_cases))];
		size_t len = c->len < CAP ? c->len : CAP;
		memcpy(work, c->line, len);
		len = mutate_line(work, len, CAP);
		char *line = malloc(len ? len : 1);
		memcpy(line, work, len);
		struct smtp_cmd cmd;
		const char *reply = NULL;
		int rc = smtp_parse_command(line, len, &cmd, &reply);
		bool good;
		if (rc == -1) {
			good = reply && reply[0] == '5' && reply[3] == ' ';
		} else if (rc == 0) {
			good = !reply && cmd.verb > SMTP_UNKNOWN && cmd.verb <= SMTP_AUTH;
			if (good && is_path_verb(cmd.verb)) {
				char out[SMTP_PATH_MAX * 2 + 8];
				good = smtp_addr_format(&cmd.addr, out, sizeof out) >= 0;
			}
			ok++;
		} else {
			good = false;
		}
		if (!good && !first_bad)
			first_bad = c->label;
		bad += !good;
		free(line);
		runs++;
	}
	tap_ok(bad == 0, "robustness: %ld mutated command lines (%ld parsed), invariants hold%s%s",
	       runs, ok, first_bad ? "; first failure from " : "", first_bad ? first_bad : "");
}

int main(void)
{
	for (size_t i = 0; i < N(cmd_cases); i++)
		run_cmd_case(&cmd_cases[i]);
	for (size_t i = 0; i < N(dsn_cases); i++)
		run_dsn_case(&dsn_cases[i]);
	for (size_t i = 0; i < N(xtext_cases); i++)
		run_xtext_case(&xtext_cases[i]);
	for (size_t i = 0; i < N(path_cases); i++)
		run_path_case(&path_cases[i]);
	for (size_t i = 0; i < N(len_cases); i++)
		run_len_case(&len_cases[i]);
	run_line_length_cases();
	run_ownership_cases();
	for (size_t i = 0; i < N(format_cases); i++)
		run_format_case(&format_cases[i]);
	for (size_t i = 0; i < N(name_cases); i++) {
		char label[64];

		snprintf(label, sizeof(label), "verb name %s", name_cases[i].want);
		TAP_STREQ(smtp_verb_name(name_cases[i].verb), name_cases[i].want,
		          label);
	}
	run_mutations();
	return tap_done();
}
