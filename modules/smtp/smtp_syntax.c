/*
 * smtp_syntax.c - the smtp transport's parsers of what a server sends
 * and of the next-hop syntax (see smtp_syntax.h).
 *
 * Everything here is bounded by the caller's buffers: a line is looked
 * at once, a reply keeps at most sizeof text bytes however many lines
 * it has, an EHLO keyword or AUTH mechanism longer than its buffer is
 * skipped whole (never split into words that might match).
 */
#include "smtp_syntax.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum smtp_line_status smtp_line_next(const char *buf, size_t avail, size_t *len, size_t *used)
{
	const char *lf = memchr(buf, '\n', avail);
	size_t scan = lf ? (size_t)(lf - buf) : avail;
	if (memchr(buf, 0, scan))
		return SMTP_LINE_NUL;
	if (!lf)
		return avail > SMTP_LINE_MAX ? SMTP_LINE_TOO_LONG : SMTP_LINE_MORE;
	if (scan > SMTP_LINE_MAX)
		return SMTP_LINE_TOO_LONG;
	if (scan == 0 || buf[scan - 1] != '\r')
		return SMTP_LINE_BARE_LF;
	*len = scan - 1;
	*used = scan + 1;
	return SMTP_LINE_OK;
}

enum smtp_reply_status smtp_reply_add(struct smtp_reply *r, const char *line, size_t len,
                                      const char **linetext)
{
	*linetext = "";
	if (r->done) {
		r->done = 0;
		r->lines = 0;
	}
	if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
	    !isdigit((unsigned char)line[2]) || (len > 3 && line[3] != ' ' && line[3] != '-'))
		return SMTP_REPLY_MALFORMED;
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->lines && code != r->code)
		return SMTP_REPLY_CODE_CHANGED;
	if (++r->lines > SMTP_REPLY_LINES)
		return SMTP_REPLY_TOO_MANY;
	r->code = code;
	const char *text = len > 4 ? line + 4 : "";
	int textn = len > 4 ? (int)(len - 4) : 0;
	size_t size = sizeof r->text;
	int n;
	if (r->lines == 1)
		n = snprintf(r->text, size, "%03d %.*s", code, textn, text);
	else if (r->textlen + 2 < size)
		n = snprintf(r->text + r->textlen, size - r->textlen, " %.*s", textn, text);
	else
		n = 0;
	if (r->lines == 1)
		r->textlen = n > 0 ? (size_t)n : 0;
	else if (n > 0)
		r->textlen += (size_t)n;
	if (r->textlen >= size)
		r->textlen = size - 1;
	*linetext = text;
	if (len > 3 && line[3] == '-')
		return SMTP_REPLY_MORE;
	r->done = 1;
	return SMTP_REPLY_DONE;
}

/* The next space-separated word of *s, upper-cased, into word; a word
 * longer than size - 1 is skipped whole and comes back empty.  Stops at
 * stop too (for "SIZE=n", "AUTH=PLAIN"). */
static void next_word(const char **s, char *word, size_t size, char stop)
{
	const char *p = *s;
	size_t k = 0;
	int over = 0;
	while (*p && *p != ' ' && *p != stop) {
		if (k < size - 1)
			word[k++] = (char)toupper((unsigned char)*p);
		else
			over = 1;
		p++;
	}
	word[over ? 0 : k] = 0;
	while (*p == ' ' || (stop && *p == stop))
		p++;
	*s = p;
}

void smtp_ehlo_keyword(const char *kw, unsigned *caps, unsigned long long *size_limit)
{
	char word[32];
	const char *arg = kw;
	next_word(&arg, word, sizeof word, '=');
	if (!strcmp(word, "PIPELINING"))
		*caps |= CAP_PIPELINING;
	else if (!strcmp(word, "SIZE")) {
		*caps |= CAP_SIZE;
		/* digits only: "SIZE -1" or "SIZE x" is no limit, not a huge one */
		unsigned long long v = 0;
		int digits = 0;
		for (const char *p = arg; isdigit((unsigned char)*p); p++, digits++) {
			unsigned d = (unsigned)(*p - '0');
			v = v > (~0ULL - d) / 10 ? ~0ULL : v * 10 + d;
		}
		*size_limit = digits ? v : 0;
	} else if (!strcmp(word, "8BITMIME"))
		*caps |= CAP_8BITMIME;
	else if (!strcmp(word, "SMTPUTF8"))
		*caps |= CAP_SMTPUTF8;
	else if (!strcmp(word, "DSN"))
		*caps |= CAP_DSN;
	else if (!strcmp(word, "STARTTLS"))
		*caps |= CAP_STARTTLS;
	else if (!strcmp(word, "AUTH")) {
		char mech[32];
		while (*arg) {
			next_word(&arg, mech, sizeof mech, 0);
			if (!strcmp(mech, "PLAIN"))
				*caps |= CAP_AUTH_PLAIN;
			else if (!strcmp(mech, "LOGIN"))
				*caps |= CAP_AUTH_LOGIN;
		}
	}
}

static int parse_port(const char *s, int *port)
{
	int v = 0, n = 0;
	for (; isdigit((unsigned char)*s) && n < 6; s++, n++)
		v = v * 10 + (*s - '0');
	if (*s || n == 0 || v < 1 || v > 65535)
		return -1;
	*port = v;
	return 0;
}

int smtp_parse_nexthop(const char *nh, char *host, size_t size, int *mx, int *port)
{
	const char *p = nh, *end;
	*mx = 1;
	if (*p == '[') {
		*mx = 0;
		end = strchr(p, ']');
		if (!end)
			return -1;
		p++;
		if (!strncasecmp(p, "IPv6:", 5))
			p += 5;
		if (end <= p || (size_t)(end - p) >= size)
			return -1;
		memcpy(host, p, (size_t)(end - p));
		host[end - p] = 0;
		end++;
	} else {
		end = strrchr(p, ':');
		if (!end)
			end = p + strlen(p);
		if (end == p || (size_t)(end - p) >= size)
			return -1;
		memcpy(host, p, (size_t)(end - p));
		host[end - p] = 0;
	}
	for (const char *h = host; *h; h++)
		if (isspace((unsigned char)*h) || iscntrl((unsigned char)*h))
			return -1;
	if (*end == ':')
		return parse_port(end + 1, port);
	return *end ? -1 : 0;
}

int smtp_parse_lmtp_nexthop(const char *nh, char *host, size_t size, int *port, int *is_unix)
{
	*is_unix = 0;
	if (!strncmp(nh, "unix:", 5) || nh[0] == '/') {
		const char *path = nh[0] == '/' ? nh : nh + 5;
		size_t n = strlen(path);
		if (path[0] != '/' || n >= SMTP_UNIX_PATH_MAX || n >= size)
			return -1;
		for (const char *h = path; *h; h++)
			if (iscntrl((unsigned char)*h))
				return -1;
		memcpy(host, path, n + 1);
		*is_unix = 1;
		return 0;
	}
	if (!strncmp(nh, "inet:", 5))
		nh += 5;
	int mx;
	return smtp_parse_nexthop(nh, host, size, &mx, port);
}
