/*
 * sendmail_parse.c - header fields and address lists for petrel-sendmail
 * (see sendmail_parse.h).
 *
 * The address list is read in one pass with a small state: inside a
 * quoted string, a comment (nested, with quoted pairs), an angle address.
 * Each list element collects the text outside comments; when it holds an
 * angle address, the address is what was inside the last <...> (without a
 * source route); else it is the element's text with its folding white
 * space dropped.  A group ("name: a, b;") contributes its members.
 */
#include "sendmail_parse.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

struct elem {
	char text[SM_ADDR_MAX];      /* outside comments and angles */
	size_t tlen;
	char angle[SM_ADDR_MAX];     /* inside the last <...> */
	size_t alen;
	bool has_angle;
	bool too_long;
};

static void put(char *b, size_t *len, bool *too_long, char c)
{
	if (*len + 1 >= SM_ADDR_MAX) {
		*too_long = true;
		return;
	}
	b[(*len)++] = c;
}

/* Hand the element's address to fn: 1 if one was given, 0 if the element
 * was empty, -1 on an error or a stop. */
static int emit(struct elem *e, sm_addr_fn *fn, void *arg)
{
	if (e->too_long)
		return -1;
	char *a;
	size_t n;
	if (e->has_angle) {
		a = e->angle;
		n = e->alen;
		a[n] = 0;
		/* <@a,@b:user@d>: the source route goes (RFC 5321 4.1.2) */
		if (n && a[0] == '@') {
			char *colon = memchr(a, ':', n);
			if (!colon)
				return -1;
			n -= (size_t)(colon + 1 - a);
			a = colon + 1;
		}
	} else {
		a = e->text;
		n = e->tlen;
	}
	while (n && isspace((unsigned char)*a)) {
		a++;
		n--;
	}
	while (n && isspace((unsigned char)a[n - 1]))
		n--;
	a[n] = 0;
	int r = !n ? 0 : fn(arg, a) ? -1 : 1;
	memset(e, 0, sizeof *e);
	return r;
}

int sm_addr_list(const char *s, size_t n, sm_addr_fn *fn, void *arg)
{
	struct elem e;
	memset(&e, 0, sizeof e);
	int count = 0, depth = 0, r;
	bool quoted = false, in_angle = false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\r' || c == '\n')    /* folding: the white space after stays */
			continue;
		if (depth) {                    /* a comment: dropped */
			if (c == '\\' && i + 1 < n)
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			continue;
		}
		char *b = in_angle ? e.angle : e.text;
		size_t *len = in_angle ? &e.alen : &e.tlen;
		if (quoted) {
			put(b, len, &e.too_long, c);
			if (c == '\\' && i + 1 < n)
				put(b, len, &e.too_long, s[++i]);
			else if (c == '"')
				quoted = false;
			continue;
		}
		switch (c) {
		case '"':
			quoted = true;
			put(b, len, &e.too_long, c);
			break;
		case '(':
			depth = 1;
			break;
		case '<':
			if (in_angle)
				return -1;
			in_angle = true;
			e.has_angle = true;
			e.alen = 0;
			break;
		case '>':
			if (!in_angle)
				return -1;
			in_angle = false;
			break;
		case ':':                       /* a group's display name ends */
			if (in_angle) {
				put(b, len, &e.too_long, c);
				break;
			}
			e.tlen = 0;
			break;
		case ',':
		case ';':
			if (in_angle) {
				put(b, len, &e.too_long, c);
				break;
			}
			if ((r = emit(&e, fn, arg)) < 0)
				return -1;
			count += r;
			break;
		case ' ':
		case '\t':
			/* white space between words of a display name or around an
			 * address: kept only inside the address's text, where the
			 * trim at the end and the angle take care of it */
			if (in_angle)
				break;
			put(b, len, &e.too_long, c);
			break;
		default:
			put(b, len, &e.too_long, c);
		}
	}
	if (quoted || depth || in_angle)
		return -1;
	if ((r = emit(&e, fn, arg)) < 0)
		return -1;
	return count + r;
}

bool sm_field_is(const char *line, size_t n, const char *name, size_t *value)
{
	size_t k = strlen(name);
	if (n <= k || strncasecmp(line, name, k))
		return false;
	size_t i = k;
	while (i < n && (line[i] == ' ' || line[i] == '\t'))   /* "To :" (obsolete syntax) */
		i++;
	if (i >= n || line[i] != ':')
		return false;
	*value = i + 1;
	return true;
}

size_t sm_field_end(const char *s, size_t n)
{
	size_t i = 0;
	for (;;) {
		const char *nl = memchr(s + i, '\n', n - i);
		if (!nl)
			return n;
		i = (size_t)(nl - s) + 1;
		if (i >= n || (s[i] != ' ' && s[i] != '\t'))
			return i;
	}
}
