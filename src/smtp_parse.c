/*
 * smtp_parse.c - the SMTP command and address parser (RFC 5321, RFC 6531).
 *
 * Turns one command line (CRLF already stripped by the session) into a
 * struct smtp_cmd, or into the exact static reply for a syntax error.
 * Nothing here does I/O, allocates or keeps state; every rule the server
 * enforces on command syntax lives in this file so that
 * tests/unit/test-smtp-parse.c can cover it table by table.
 *
 * Conventions, shared with the session:
 *   - Verbs and keywords are case-insensitive.  SP and HTAB both separate
 *     words; runs of them, and leading or trailing ones, are tolerated.
 *   - An address is scanned in two passes: first the RFC 5321 4.1.2
 *     grammar over the caller's octets (recording spans, never copying),
 *     then the 4.5.3.1 length limits, and only then a copy into the fixed
 *     buffers of struct smtp_addr, so those buffers cannot overflow.
 *   - Policy (relaying, who may use VRFY, which extensions were
 *     advertised, SMTPUTF8 on RCPT) is the session's business, not ours.
 */
#include "smtp_parse.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* Replies.  Static strings only: the caller sends them as they are. */
#define R_UNKNOWN      "500 5.5.1 Command unrecognized"
#define R_LINE_LONG    "500 5.5.6 Line too long"
#define R_HELO         "501 5.5.2 Syntax: HELO hostname"
#define R_EHLO         "501 5.5.2 Syntax: EHLO hostname"
#define R_MAIL         "501 5.5.2 Syntax: MAIL FROM:<address>"
#define R_RCPT         "501 5.5.2 Syntax: RCPT TO:<address>"
#define R_BDAT         "501 5.5.2 Syntax: BDAT chunk-size [LAST]"
#define R_VRFY         "501 5.5.2 Syntax: VRFY address"
#define R_EXPN         "501 5.5.2 Syntax: EXPN mailing-list"
#define R_HELP         "501 5.5.2 Syntax: HELP [topic]"
#define R_NOOP         "501 5.5.2 Syntax: NOOP [string]"
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

/* Why an address was refused; mapped to the static texts of path_why[]. */
enum path_err {
	PATH_OK = 0,
	PATH_NO_OPEN,       /* does not start with '<' */
	PATH_NO_CLOSE,      /* no '>' where one is due */
	PATH_NULL,          /* "<>" where not allowed */
	PATH_ROUTE,         /* bad source route */
	PATH_LOCAL,         /* bad local part */
	PATH_NO_AT,         /* local part not followed by '@' */
	PATH_DOMAIN,        /* bad domain */
	PATH_LITERAL,       /* bad address literal */
	PATH_NON_ASCII,     /* octet >= 0x80 without allow_utf8 */
	PATH_BAD_UTF8,      /* ill-formed UTF-8 */
	PATH_LOCAL_LONG,    /* > SMTP_LOCAL_MAX */
	PATH_DOMAIN_LONG,   /* > SMTP_DOMAIN_MAX */
	PATH_PATH_LONG,     /* > SMTP_PATH_MAX */
};

static const char *const path_why[] = {
	[PATH_OK]          = "ok",
	[PATH_NO_OPEN]     = "missing <",
	[PATH_NO_CLOSE]    = "missing >",
	[PATH_NULL]        = "null path not allowed",
	[PATH_ROUTE]       = "bad source route",
	[PATH_LOCAL]       = "bad local part",
	[PATH_NO_AT]       = "missing @domain",
	[PATH_DOMAIN]      = "bad domain",
	[PATH_LITERAL]     = "bad address literal",
	[PATH_NON_ASCII]   = "non-ASCII without SMTPUTF8",
	[PATH_BAD_UTF8]    = "malformed UTF-8",
	[PATH_LOCAL_LONG]  = "local part too long",
	[PATH_DOMAIN_LONG] = "domain too long",
	[PATH_PATH_LONG]   = "path too long",
};

static bool path_err_is_length(enum path_err e)
{
	return e == PATH_LOCAL_LONG || e == PATH_DOMAIN_LONG ||
	       e == PATH_PATH_LONG;
}

/* A scanning cursor over the caller's octets; never reads at or past end. */
struct scan {
	const unsigned char *p;
	const unsigned char *end;
};

static int peek(const struct scan *sc)
{
	return sc->p < sc->end ? *sc->p : -1;
}

static bool is_ws(int c)
{
	return c == ' ' || c == '\t';
}

static bool is_alpha(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool is_ctl(int c)
{
	return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f;
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* RFC 5322 atext, the ASCII part. */
static bool is_atext(int c)
{
	return is_alpha(c) || is_digit(c) ||
	       (c > 0 && c < 0x80 && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* RFC 5321 qtextSMTP, the ASCII part. */
static bool is_qtext(int c)
{
	return (c >= 32 && c <= 33) || (c >= 35 && c <= 91) ||
	       (c >= 93 && c <= 126);
}

static void skip_ws(struct scan *sc)
{
	while (sc->p < sc->end && is_ws(*sc->p))
		sc->p++;
}

/* Case-insensitive match of an ASCII word at the cursor; advances on match. */
static bool eat_word(struct scan *sc, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(sc->end - sc->p) < n ||
	    strncasecmp((const char *)sc->p, word, n) != 0)
		return false;
	sc->p += n;
	return true;
}

/*
 * utf8_seq - length of the well-formed UTF-8 sequence (RFC 3629 section 4)
 * at p, at most n octets available; 0 if ill-formed (stray continuation,
 * overlong form, surrogate, beyond U+10FFFF, truncated).
 */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;              /* overlong */
	else if (c == 0xed)
		hi = 0x9f;              /* surrogates */
	else if (c == 0xf0)
		lo = 0x90;              /* overlong */
	else if (c == 0xf4)
		hi = 0x8f;              /* > U+10FFFF */
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

/*
 * eat_utf8 - at an octet >= 0x80, step over one UTF-8 character.
 * Returns PATH_OK, PATH_NON_ASCII or PATH_BAD_UTF8.
 */
static enum path_err eat_utf8(struct scan *sc, bool allow_utf8)
{
	size_t n;

	if (!allow_utf8)
		return PATH_NON_ASCII;
	n = utf8_seq(sc->p, (size_t)(sc->end - sc->p));
	if (n == 0)
		return PATH_BAD_UTF8;
	sc->p += n;
	return PATH_OK;
}

/* Dot-string = Atom *("." Atom), atext extended by RFC 6531. */
static enum path_err scan_dot_string(struct scan *sc, bool allow_utf8)
{
	bool need_atext = true;         /* at start, or just after a dot */
	enum path_err e;
	int c;

	while ((c = peek(sc)) >= 0) {
		if (c >= 0x80) {
			if ((e = eat_utf8(sc, allow_utf8)) != PATH_OK)
				return e;
			need_atext = false;
		} else if (is_atext(c)) {
			sc->p++;
			need_atext = false;
		} else if (c == '.' && !need_atext) {
			sc->p++;
			need_atext = true;
		} else {
			break;
		}
	}
	return need_atext ? PATH_LOCAL : PATH_OK;
}

/* Quoted-string = DQUOTE *QcontentSMTP DQUOTE; cursor on the opening quote. */
static enum path_err scan_quoted(struct scan *sc, bool allow_utf8)
{
	enum path_err e;
	int c;

	sc->p++;
	while ((c = peek(sc)) >= 0) {
		if (c == '"') {
			sc->p++;
			return PATH_OK;
		}
		if (c == '\\') {
			sc->p++;
			c = peek(sc);
			if (c < 32 || c > 126)
				return PATH_LOCAL;
			sc->p++;
		} else if (c >= 0x80) {
			if ((e = eat_utf8(sc, allow_utf8)) != PATH_OK)
				return e;
		} else if (is_qtext(c)) {
			sc->p++;
		} else {
			return PATH_LOCAL;
		}
	}
	return PATH_LOCAL;
}

/*
 * scan_domain - Domain = sub-domain *("." sub-domain), where
 * sub-domain = Let-dig [Ldh-str] or a U-label (RFC 6531).  An all-ASCII
 * label may not exceed 63 octets (RFC 1035 2.3.4).  Stops at the first
 * octet that cannot continue the domain.
 */
static enum path_err scan_domain(struct scan *sc, bool allow_utf8)
{
	for (;;) {
		const unsigned char *label = sc->p;
		bool ascii = true;
		int c, last = -1;
		enum path_err e;

		while ((c = peek(sc)) >= 0) {
			if (c >= 0x80) {
				if ((e = eat_utf8(sc, allow_utf8)) != PATH_OK)
					return e;
				ascii = false;
			} else if (is_alpha(c) || is_digit(c) ||
			           (c == '-' && sc->p != label)) {
				sc->p++;
			} else {
				break;
			}
			last = c;
		}
		if (sc->p == label || last == '-')
			return PATH_DOMAIN;
		if (ascii && sc->p - label > 63)
			return PATH_DOMAIN;
		if (peek(sc) != '.')
			return PATH_OK;
		sc->p++;
	}
}

/*
 * scan_literal - address-literal: "[" IPv4 "]" or "[IPv6:" IPv6 "]",
 * checked with inet_pton.  General-address-literal (other tags) is
 * refused: we could never route to it.  Cursor on '['.
 */
static enum path_err scan_literal(struct scan *sc)
{
	const unsigned char *in = sc->p + 1;
	const unsigned char *close;
	char buf[64];
	unsigned char addr[16];
	size_t n;
	int af = AF_INET;

	close = memchr(in, ']', (size_t)(sc->end - in));
	if (!close)
		return PATH_LITERAL;
	n = (size_t)(close - in);
	if (n >= 5 && strncasecmp((const char *)in, "IPv6:", 5) == 0) {
		af = AF_INET6;
		in += 5;
		n -= 5;
	}
	if (n == 0 || n >= sizeof(buf))
		return PATH_LITERAL;
	memcpy(buf, in, n);
	buf[n] = '\0';
	if (strlen(buf) != n || inet_pton(af, buf, addr) != 1)
		return PATH_LITERAL;
	sc->p = close + 1;
	return PATH_OK;
}

/* Spans of one scanned path, pointing into the caller's octets. */
struct path_spans {
	const unsigned char *open, *close;      /* '<' and one past '>' */
	const unsigned char *local, *local_end;
	const unsigned char *domain, *domain_end;
	bool null, quoted, literal, utf8;
};

/* A-d-l = At-domain *( "," At-domain ) ":" ; cursor on the first '@'. */
static enum path_err scan_route(struct scan *sc, bool allow_utf8)
{
	for (;;) {
		enum path_err e;

		if (peek(sc) != '@')
			return PATH_ROUTE;
		sc->p++;
		e = scan_domain(sc, allow_utf8);
		if (e == PATH_DOMAIN)
			return PATH_ROUTE;
		if (e != PATH_OK)
			return e;
		if (peek(sc) == ':') {
			sc->p++;
			return PATH_OK;
		}
		if (peek(sc) != ',')
			return PATH_ROUTE;
		sc->p++;
	}
}

static bool span_has_8bit(const unsigned char *p, const unsigned char *end)
{
	for (; p < end; p++)
		if (*p >= 0x80)
			return true;
	return false;
}

/* The Mailbox after the optional route, up to and including '>'. */
static enum path_err scan_mailbox(struct scan *sc, bool allow_utf8,
                                  bool routed, struct path_spans *ps)
{
	enum path_err e;

	ps->local = sc->p;
	ps->quoted = peek(sc) == '"';
	e = ps->quoted ? scan_quoted(sc, allow_utf8)
	               : scan_dot_string(sc, allow_utf8);
	if (e != PATH_OK)
		return e;
	ps->local_end = sc->p;
	ps->domain = ps->domain_end = sc->p;

	/* RFC 5321 4.1.1.3: "<Postmaster>" needs no domain. */
	if (peek(sc) == '>' && !routed && !ps->quoted &&
	    ps->local_end - ps->local == 10 &&
	    strncasecmp((const char *)ps->local, "postmaster", 10) == 0) {
		sc->p++;
		return PATH_OK;
	}
	if (peek(sc) != '@')
		return PATH_NO_AT;
	sc->p++;
	ps->domain = sc->p;
	ps->literal = peek(sc) == '[';
	e = ps->literal ? scan_literal(sc) : scan_domain(sc, allow_utf8);
	if (e != PATH_OK)
		return e;
	ps->domain_end = sc->p;
	if (peek(sc) != '>')
		return PATH_NO_CLOSE;
	sc->p++;
	return PATH_OK;
}

/* Grammar pass (RFC 5321 4.1.2), then the length limits (4.5.3.1). */
static enum path_err scan_path(struct scan *sc, bool allow_null,
                               bool allow_utf8, struct path_spans *ps)
{
	enum path_err e;
	bool routed = false;

	memset(ps, 0, sizeof(*ps));
	ps->open = sc->p;
	if (peek(sc) != '<')
		return PATH_NO_OPEN;
	sc->p++;
	if (peek(sc) == '>') {
		if (!allow_null)
			return PATH_NULL;
		sc->p++;
		ps->null = true;
		ps->close = sc->p;
		return PATH_OK;
	}
	if (peek(sc) == '@') {
		if ((e = scan_route(sc, allow_utf8)) != PATH_OK)
			return e;
		routed = true;
	}
	if ((e = scan_mailbox(sc, allow_utf8, routed, ps)) != PATH_OK)
		return e;
	ps->close = sc->p;

	if (ps->local_end - ps->local > SMTP_LOCAL_MAX)
		return PATH_LOCAL_LONG;
	if (ps->domain_end - ps->domain > SMTP_DOMAIN_MAX)
		return PATH_DOMAIN_LONG;
	if (ps->close - ps->open > SMTP_PATH_MAX)
		return PATH_PATH_LONG;
	ps->utf8 = span_has_8bit(ps->local, ps->local_end) ||
	           span_has_8bit(ps->domain, ps->domain_end);
	return PATH_OK;
}

/* Copy the quoted local part without its quotes and backslashes. */
static void unquote(const unsigned char *p, const unsigned char *end,
                    char *out)
{
	for (p++, end--; p < end; p++) {
		if (*p == '\\')
			p++;
		*out++ = (char)*p;
	}
	*out = '\0';
}

/*
 * copy_domain - lower-case the ASCII of a domain; a literal keeps its
 * brackets, and its "IPv6:" tag is written in that canonical spelling.
 */
static void copy_domain(const struct path_spans *ps, char *out)
{
	const unsigned char *p = ps->domain;

	if (ps->literal && ps->domain_end - p > 6 &&
	    strncasecmp((const char *)p + 1, "IPv6:", 5) == 0) {
		memcpy(out, "[IPv6:", 6);
		out += 6;
		p += 6;
	}
	for (; p < ps->domain_end; p++)
		*out++ = (char)lower(*p);
	*out = '\0';
}

/* Fill *out from scanned spans; the length checks made every copy fit. */
static void fill_addr(const struct path_spans *ps, struct smtp_addr *out)
{
	size_t n = (size_t)(ps->local_end - ps->local);

	memset(out, 0, sizeof(*out));
	out->null = ps->null;
	if (ps->null)
		return;
	out->quoted = ps->quoted;
	out->literal = ps->literal;
	out->utf8 = ps->utf8;
	memcpy(out->local, ps->local, n);
	out->local[n] = '\0';
	if (ps->quoted) {
		unquote(ps->local, ps->local_end, out->local_plain);
	} else {
		memcpy(out->local_plain, ps->local, n);
		out->local_plain[n] = '\0';
	}
	copy_domain(ps, out->domain);
}

int smtp_parse_path(const char *s, size_t len, bool allow_null, bool allow_utf8,
                    struct smtp_addr *out, const char **end, const char **why)
{
	struct scan sc = {
		.p = (const unsigned char *)s,
		.end = (const unsigned char *)s + len,
	};
	struct path_spans ps;
	enum path_err e;

	e = scan_path(&sc, allow_null, allow_utf8, &ps);
	*end = (const char *)sc.p;
	if (e != PATH_OK) {
		*why = path_why[e];
		return -1;
	}
	*why = NULL;
	fill_addr(&ps, out);
	return 0;
}

int smtp_addr_format(const struct smtp_addr *a, char *buf, size_t size)
{
	size_t nl = a->null ? 0 : strlen(a->local);
	size_t nd = a->null ? 0 : strlen(a->domain);
	size_t total = nd ? nl + 1 + nd : nl;

	if (total + 1 > size)
		return -1;
	memcpy(buf, a->local, nl);
	if (nd) {
		buf[nl] = '@';
		memcpy(buf + nl + 1, a->domain, nd);
	}
	buf[total] = '\0';
	return (int)total;
}

/* ------------------------------------------------------------------ */
/* Commands                                                           */
/* ------------------------------------------------------------------ */

/* A decimal number that fits uint64_t: digits only, no sign. */
static bool parse_u64(const unsigned char *p, const unsigned char *end,
                      uint64_t *out)
{
	uint64_t v = 0;

	if (p == end)
		return false;
	for (; p < end; p++) {
		unsigned d;

		if (!is_digit(*p))
			return false;
		d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* The next SP/HTAB-separated word; false at end of line. */
static bool next_word(struct scan *sc, const unsigned char **w,
                      const unsigned char **w_end)
{
	skip_ws(sc);
	if (sc->p == sc->end)
		return false;
	*w = sc->p;
	while (sc->p < sc->end && !is_ws(*sc->p))
		sc->p++;
	*w_end = sc->p;
	return true;
}

static bool word_is(const unsigned char *w, const unsigned char *end,
                    const char *s)
{
	size_t n = strlen(s);

	return (size_t)(end - w) == n &&
	       strncasecmp((const char *)w, s, n) == 0;
}

static bool is_upper_hex(int c)
{
	return is_digit(c) || (c >= 'A' && c <= 'F');
}

/* RFC 3461 xtext, as RFC 4954 uses it for MAIL AUTH=. */
static bool is_xtext(const unsigned char *p, const unsigned char *end)
{
	for (; p < end; p++) {
		if (*p == '+') {
			if (end - p < 3 || !is_upper_hex(p[1]) ||
			    !is_upper_hex(p[2]))
				return false;
			p += 2;
		} else if (*p < 33 || *p > 126 || *p == '=') {
			return false;
		}
	}
	return true;
}

/* One MAIL parameter "KEYWORD[=value]"; sets *reply and returns -1 on error. */
static int mail_param(const unsigned char *w, const unsigned char *end,
                      struct smtp_cmd *cmd, bool *seen_body, bool *seen_auth,
                      const char **reply)
{
	const unsigned char *eq = memchr(w, '=', (size_t)(end - w));
	const unsigned char *kend = eq ? eq : end;
	const unsigned char *v = eq ? eq + 1 : end;

	if (word_is(w, kend, "SIZE")) {
		if (!eq || cmd->has_size || !parse_u64(v, end, &cmd->size))
			goto bad_value;
		cmd->has_size = true;
	} else if (word_is(w, kend, "BODY")) {
		if (!eq || *seen_body)
			goto bad_value;
		if (word_is(v, end, "7BIT"))
			cmd->body = SMTP_BODY_7BIT;
		else if (word_is(v, end, "8BITMIME"))
			cmd->body = SMTP_BODY_8BITMIME;
		else if (word_is(v, end, "BINARYMIME"))
			cmd->body = SMTP_BODY_BINARYMIME;
		else
			goto bad_value;
		*seen_body = true;
	} else if (word_is(w, kend, "SMTPUTF8")) {
		if (eq || cmd->smtputf8)
			goto bad_value;
		cmd->smtputf8 = true;
	} else if (word_is(w, kend, "AUTH")) {
		/* RFC 4954 section 5: accepted and dropped, i.e. AUTH=<>. */
		if (!eq || v == end || *seen_auth || !is_xtext(v, end))
			goto bad_value;
		*seen_auth = true;
	} else if (word_is(w, kend, "RET")) {
		if (!eq || cmd->ret)
			goto bad_value;
		if (word_is(v, end, "FULL"))
			cmd->ret = SMTP_RET_FULL;
		else if (word_is(v, end, "HDRS"))
			cmd->ret = SMTP_RET_HDRS;
		else
			goto bad_value;
	} else if (word_is(w, kend, "ENVID")) {
		if (!eq || v == end || cmd->envid[0] || end - v > SMTP_ENVID_MAX ||
		    !is_xtext(v, end))
			goto bad_value;
		memcpy(cmd->envid, v, (size_t)(end - v));
		cmd->envid[end - v] = 0;
	} else {
		*reply = R_PARAM;
		return -1;
	}
	return 0;
bad_value:
	*reply = R_PARAM_VALUE;
	return -1;
}

/* NOTIFY=NEVER, or a list of SUCCESS, FAILURE, DELAY, each at most once. */
static bool parse_notify(const unsigned char *v, const unsigned char *end, unsigned *out)
{
	static const struct { const char *word; unsigned bit; } words[] = {
		{ .word = "SUCCESS", .bit = SMTP_NOTIFY_SUCCESS },
		{ .word = "FAILURE", .bit = SMTP_NOTIFY_FAILURE },
		{ .word = "DELAY", .bit = SMTP_NOTIFY_DELAY },
		{ .word = "NEVER", .bit = SMTP_NOTIFY_NEVER },
	};
	unsigned bits = 0;
	if (v == end)
		return false;
	while (v <= end) {
		const unsigned char *comma = memchr(v, ',', (size_t)(end - v));
		const unsigned char *wend = comma ? comma : end;
		unsigned bit = 0;
		for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
			if (word_is(v, wend, words[i].word))
				bit = words[i].bit;
		if (!bit || (bits & bit))
			return false;
		bits |= bit;
		if (!comma)
			break;
		v = comma + 1;
	}
	if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
		return false;
	*out = bits;
	return true;
}

/* ORCPT=addr-type;xtext (RFC 3461 4.2): addr-type is an atom. */
static bool orcpt_ok(const unsigned char *v, const unsigned char *end)
{
	const unsigned char *semi = memchr(v, ';', (size_t)(end - v));
	if (!semi || semi == v || semi + 1 == end || end - v > SMTP_ORCPT_MAX)
		return false;
	for (const unsigned char *p = v; p < semi; p++)
		if (!is_atext(*p))
			return false;
	return is_xtext(semi + 1, end);
}

/* One RCPT parameter; sets *reply and returns -1 on error. */
static int rcpt_param(const unsigned char *w, const unsigned char *end,
                      struct smtp_cmd *cmd, const char **reply)
{
	const unsigned char *eq = memchr(w, '=', (size_t)(end - w));
	const unsigned char *kend = eq ? eq : end;
	const unsigned char *v = eq ? eq + 1 : end;

	if (word_is(w, kend, "NOTIFY")) {
		if (!eq || cmd->notify || !parse_notify(v, end, &cmd->notify))
			goto bad_value;
	} else if (word_is(w, kend, "ORCPT")) {
		if (!eq || cmd->orcpt[0] || !orcpt_ok(v, end))
			goto bad_value;
		memcpy(cmd->orcpt, v, (size_t)(end - v));
		cmd->orcpt[end - v] = 0;
	} else {
		*reply = R_PARAM;
		return -1;
	}
	return 0;
bad_value:
	*reply = R_PARAM_VALUE;
	return -1;
}

static int hexval(int c)
{
	return is_digit(c) ? c - '0' : c - 'A' + 10;
}

int smtp_xtext_decode(const char *in, size_t n, char *out, size_t size)
{
	const unsigned char *p = (const unsigned char *)in, *end = p + n;
	size_t o = 0;
	if (!is_xtext(p, end))
		return -1;
	while (p < end) {
		int c = *p++;
		if (c == '+') {
			c = hexval(p[0]) * 16 + hexval(p[1]);
			p += 2;
		}
		if (o + 1 >= size)
			return -1;
		out[o++] = (char)c;
	}
	if (!size)
		return -1;
	out[o] = 0;
	return (int)o;
}

/*
 * parse_path_arg - "FROM:" / "TO:" and the path after it, for MAIL and
 * RCPT.  On return sc is just past '>'; what follows must be a space or
 * the end of the line.
 */
static int parse_path_arg(struct scan *sc, const char *keyword, bool is_mail,
                          struct smtp_cmd *cmd, const char **reply)
{
	struct path_spans ps;
	enum path_err e;

	skip_ws(sc);
	if (!eat_word(sc, keyword)) {
		*reply = is_mail ? R_MAIL : R_RCPT;
		return -1;
	}
	skip_ws(sc);
	if (sc->p == sc->end) {
		*reply = is_mail ? R_MAIL : R_RCPT;
		return -1;
	}
	e = scan_path(sc, is_mail, true, &ps);
	if (e == PATH_OK && sc->p < sc->end && !is_ws(*sc->p))
		e = PATH_NO_CLOSE;      /* garbage right after '>' */
	/* "<Postmaster>" without a domain is for RCPT only. */
	if (e == PATH_OK && is_mail && !ps.null && ps.domain == ps.domain_end)
		e = PATH_NO_AT;
	if (e != PATH_OK) {
		if (path_err_is_length(e))
			*reply = is_mail ? R_LONG_SENDER : R_LONG_RCPT;
		else
			*reply = is_mail ? R_BAD_SENDER : R_BAD_RCPT;
		return -1;
	}
	fill_addr(&ps, &cmd->addr);
	return 0;
}

static int parse_mail(struct scan *sc, struct smtp_cmd *cmd, const char **reply)
{
	const unsigned char *w, *w_end;
	bool seen_body = false, seen_auth = false;

	if (parse_path_arg(sc, "FROM:", true, cmd, reply) < 0)
		return -1;
	while (next_word(sc, &w, &w_end))
		if (mail_param(w, w_end, cmd, &seen_body, &seen_auth,
		               reply) < 0)
			return -1;
	if (cmd->addr.utf8 && !cmd->smtputf8) {
		*reply = R_NEED_UTF8;
		return -1;
	}
	return 0;
}

/* RCPT: the DSN parameters NOTIFY and ORCPT; SMTPUTF8 is the session's. */
static int parse_rcpt(struct scan *sc, struct smtp_cmd *cmd, const char **reply)
{
	const unsigned char *w, *w_end;

	if (parse_path_arg(sc, "TO:", false, cmd, reply) < 0)
		return -1;
	while (next_word(sc, &w, &w_end))
		if (rcpt_param(w, w_end, cmd, reply) < 0)
			return -1;
	return 0;
}

static int parse_bdat(struct scan *sc, struct smtp_cmd *cmd, const char **reply)
{
	const unsigned char *w, *w_end;

	*reply = R_BDAT;
	if (!next_word(sc, &w, &w_end) ||
	    !parse_u64(w, w_end, &cmd->chunk_size))
		return -1;
	if (next_word(sc, &w, &w_end)) {
		if (!word_is(w, w_end, "LAST"))
			return -1;
		cmd->last = true;
	}
	if (next_word(sc, &w, &w_end))
		return -1;
	*reply = NULL;
	return 0;
}

/* Rest of the line, trimmed, into cmd->arg; no control octets but HTAB. */
static int parse_text(struct scan *sc, struct smtp_cmd *cmd, bool required)
{
	const unsigned char *p, *end = sc->end;

	skip_ws(sc);
	while (end > sc->p && is_ws(end[-1]))
		end--;
	if (required && sc->p == end)
		return -1;
	for (p = sc->p; p < end; p++)
		if (is_ctl(*p))
			return -1;
	memcpy(cmd->arg, sc->p, (size_t)(end - sc->p));
	cmd->arg[end - sc->p] = '\0';
	return 0;
}

enum arg_kind { ARG_NONE, ARG_TEXT, ARG_TEXT_REQUIRED, ARG_SPECIAL };

struct verb_desc {
	const char *name;
	enum smtp_verb verb;
	enum arg_kind arg;
	const char *syntax;             /* reply for bad arguments */
	int (*parse)(struct scan *, struct smtp_cmd *, const char **);
};

static const struct verb_desc verbs[] = {
	{ .name = "HELO", .verb = SMTP_HELO, .arg = ARG_TEXT_REQUIRED,
	  .syntax = R_HELO },
	{ .name = "EHLO", .verb = SMTP_EHLO, .arg = ARG_TEXT_REQUIRED,
	  .syntax = R_EHLO },
	{ .name = "MAIL", .verb = SMTP_MAIL, .arg = ARG_SPECIAL,
	  .parse = parse_mail },
	{ .name = "RCPT", .verb = SMTP_RCPT, .arg = ARG_SPECIAL,
	  .parse = parse_rcpt },
	{ .name = "DATA", .verb = SMTP_DATA, .arg = ARG_NONE,
	  .syntax = R_DATA },
	{ .name = "BDAT", .verb = SMTP_BDAT, .arg = ARG_SPECIAL,
	  .parse = parse_bdat },
	{ .name = "RSET", .verb = SMTP_RSET, .arg = ARG_NONE,
	  .syntax = R_RSET },
	{ .name = "NOOP", .verb = SMTP_NOOP, .arg = ARG_TEXT,
	  .syntax = R_NOOP },
	{ .name = "QUIT", .verb = SMTP_QUIT, .arg = ARG_NONE,
	  .syntax = R_QUIT },
	{ .name = "VRFY", .verb = SMTP_VRFY, .arg = ARG_TEXT,
	  .syntax = R_VRFY },
	{ .name = "EXPN", .verb = SMTP_EXPN, .arg = ARG_TEXT,
	  .syntax = R_EXPN },
	{ .name = "HELP", .verb = SMTP_HELP, .arg = ARG_TEXT,
	  .syntax = R_HELP },
	{ .name = "STARTTLS", .verb = SMTP_STARTTLS, .arg = ARG_NONE,
	  .syntax = R_STARTTLS },
	{ .name = "AUTH", .verb = SMTP_AUTH, .arg = ARG_TEXT,
	  .syntax = R_AUTH },
};

static const struct verb_desc *find_verb(const unsigned char *w,
                                         const unsigned char *end)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (word_is(w, end, verbs[i].name))
			return &verbs[i];
	return NULL;
}

static int parse_args(const struct verb_desc *vd, struct scan *sc,
                      struct smtp_cmd *cmd, const char **reply)
{
	switch (vd->arg) {
	case ARG_NONE:
		skip_ws(sc);
		if (sc->p == sc->end)
			return 0;
		break;
	case ARG_TEXT:
	case ARG_TEXT_REQUIRED:
		if (parse_text(sc, cmd, vd->arg == ARG_TEXT_REQUIRED) == 0)
			return 0;
		break;
	case ARG_SPECIAL:
		return vd->parse(sc, cmd, reply);
	}
	*reply = vd->syntax;
	return -1;
}

int smtp_parse_command(const char *line, size_t len, struct smtp_cmd *cmd,
                       const char **reply)
{
	struct scan sc = {
		.p = (const unsigned char *)line,
		.end = (const unsigned char *)line + len,
	};
	const unsigned char *w, *w_end;
	const struct verb_desc *vd;

	memset(cmd, 0, sizeof(*cmd));
	*reply = NULL;
	if (len >= SMTP_CMD_LINE_MAX) {
		*reply = R_LINE_LONG;
		return -1;
	}
	if (!next_word(&sc, &w, &w_end) || !(vd = find_verb(w, w_end))) {
		*reply = R_UNKNOWN;
		return -1;
	}
	cmd->verb = vd->verb;
	if (parse_args(vd, &sc, cmd, reply) < 0) {
		enum smtp_verb v = cmd->verb;

		memset(cmd, 0, sizeof(*cmd));
		cmd->verb = v;          /* for the session's error counters/logs */
		return -1;
	}
	return 0;
}

const char *smtp_verb_name(enum smtp_verb v)
{
	static const char *const names[] = {
		[SMTP_UNKNOWN] = "UNKNOWN",
		[SMTP_HELO] = "HELO", [SMTP_EHLO] = "EHLO",
		[SMTP_MAIL] = "MAIL", [SMTP_RCPT] = "RCPT",
		[SMTP_DATA] = "DATA", [SMTP_BDAT] = "BDAT",
		[SMTP_RSET] = "RSET", [SMTP_NOOP] = "NOOP",
		[SMTP_QUIT] = "QUIT", [SMTP_VRFY] = "VRFY",
		[SMTP_EXPN] = "EXPN", [SMTP_HELP] = "HELP",
		[SMTP_STARTTLS] = "STARTTLS", [SMTP_AUTH] = "AUTH",
	};

	if ((unsigned)v >= sizeof(names) / sizeof(names[0]) || !names[v])
		return "UNKNOWN";
	return names[v];
}
