/*
 * mime_decode.c - what the MIME parser (mime.c) decodes: characters and
 * charsets, base64 and quoted-printable, header fields, parameters (RFC
 * 2045, RFC 2231), RFC 2047 encoded-words.
 *
 * Decoders (base64, quoted-printable, RFC 2231 %XX, RFC 2047 words)
 * never fail: they decode what they can and report the rest.  Charsets
 * become UTF-8 through built-in tables for UTF-8/ASCII, ISO-8859-1 and
 * windows-1252, and iconv(3) for the others; invalid input becomes
 * U+FFFD, so what leaves here claiming to be UTF-8 is valid UTF-8.
 *
 * Nothing here relies on a NUL after the message, logs, or keeps state
 * between calls.
 */
#include "mime.h"
#include "mime_int.h"

#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SEGS 128            /* RFC 2231 continuations name*0 .. name*127 */

/* ---- characters ---------------------------------------------------- */

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

bool mime_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

char mime_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* RFC 2045 token character: printable ASCII but no tspecials. */
bool mime_is_token(char c)
{
	unsigned char u = (unsigned char)c;
	return u > ' ' && u < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

static bool all_space(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!mime_is_space(s[i]))
			return false;
	return true;
}

const char *mime_bstr(const struct buf *b)
{
	return b->data ? b->data : "";
}

/* Append unless n is 0 or out is NULL (the decoders' validate-only mode). */
void mime_add(struct buf *out, const char *s, size_t n)
{
	if (n && out)
		buf_add(out, s, n);
}

/* ---- UTF-8 and charsets -------------------------------------------- */

static void put_utf8(struct buf *out, unsigned cp)
{
	char b[4];
	size_t n;
	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xC0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xE0 | cp >> 12);
		b[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		b[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		b[0] = (char)(0xF0 | cp >> 18);
		b[1] = (char)(0x80 | (cp >> 12 & 0x3F));
		b[2] = (char)(0x80 | (cp >> 6 & 0x3F));
		b[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	buf_add(out, b, n);
}

/* Length of the valid UTF-8 sequence starting s[0..n), 0 if invalid. */
static size_t utf8_seq(const char *s, size_t n)
{
	unsigned c = (unsigned char)s[0], cp, min;
	size_t len;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2, cp = c & 0x1F, min = 0x80;
	else if ((c & 0xF0) == 0xE0)
		len = 3, cp = c & 0x0F, min = 0x800;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4, cp = c & 0x07, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | ((unsigned char)s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

/* Append s as UTF-8, each octet of an invalid sequence becoming U+FFFD. */
void mime_add_utf8_clean(struct buf *out, const char *s, size_t n)
{
	size_t i = 0, run = 0;
	while (i < n) {
		size_t l = utf8_seq(s + i, n - i);
		if (l) {
			i += l;
			continue;
		}
		mime_add(out, s + run, i - run);
		put_utf8(out, 0xFFFD);
		run = ++i;
	}
	mime_add(out, s + run, n - run);
}

/* windows-1252 0x80..0x9F; the five holes map to C1 as WHATWG does. */
static const unsigned short cp1252_high[32] = {
	0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
	0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
};

static void add_8bit(struct buf *out, const char *s, size_t n, bool cp1252)
{
	for (size_t i = 0; i < n; i++) {
		unsigned c = (unsigned char)s[i];
		if (cp1252 && c >= 0x80 && c < 0xA0)
			c = cp1252_high[c - 0x80];
		put_utf8(out, c);
	}
}

static int add_iconv(const char *charset, const char *s, size_t n, struct buf *out)
{
	iconv_t cd = iconv_open("UTF-8", charset);
	if (cd == (iconv_t)-1)
		return -1;
	char *ip = (char *)s;
	size_t il = n, room = n * 4 + 16;
	for (;;) {
		buf_reserve(out, room);
		char *op = out->data + out->len;
		size_t ol = out->cap - out->len - 1;
		size_t r = il ? iconv(cd, &ip, &il, &op, &ol)
		              : iconv(cd, NULL, NULL, &op, &ol);   /* shift state */
		int err = errno;
		out->len = (size_t)(op - out->data);
		out->data[out->len] = 0;
		if (r != (size_t)-1) {
			if (!il)
				break;
			continue;
		}
		if (err == E2BIG) {
			room *= 2;
		} else if (err == EILSEQ && il) {
			put_utf8(out, 0xFFFD);
			ip++, il--;
		} else {                /* EINVAL: truncated sequence at the end */
			put_utf8(out, 0xFFFD);
			break;
		}
	}
	iconv_close(cd);
	return 0;
}

/*
 * Append s[0..n) in charset cs[0..cslen) as UTF-8.  -1 (nothing
 * appended) if the charset is unknown.  An RFC 2231 "*language" suffix is
 * ignored; an empty charset is taken as UTF-8.
 */
static int to_utf8(const char *cs, size_t cslen, const char *s, size_t n, struct buf *out)
{
	static const char *const utf8[] = { "", "utf-8", "utf8", "us-ascii", "ascii", NULL };
	static const char *const latin1[] = { "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "l1", NULL };
	static const char *const win[] = { "windows-1252", "cp1252", "x-cp1252", NULL };
	char name[48];
	const char *star = memchr(cs, '*', cslen);
	if (star)
		cslen = (size_t)(star - cs);
	if (cslen >= sizeof name)
		return -1;
	for (size_t i = 0; i < cslen; i++) {
		char c = mime_lower(cs[i]);
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("-_.:+", c)) || !c)
			return -1;
		name[i] = c;
	}
	name[cslen] = 0;
	for (int i = 0; utf8[i]; i++)
		if (!strcmp(name, utf8[i])) {
			mime_add_utf8_clean(out, s, n);
			return 0;
		}
	for (int i = 0; latin1[i]; i++)
		if (!strcmp(name, latin1[i])) {
			add_8bit(out, s, n, false);
			return 0;
		}
	for (int i = 0; win[i]; i++)
		if (!strcmp(name, win[i])) {
			add_8bit(out, s, n, true);
			return 0;
		}
	return add_iconv(name, s, n, out);
}

/* ---- transfer decoders --------------------------------------------- */

#define B64_BAD_CHAR 1
#define B64_BAD_PAD  2

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Lenient base64: whitespace ignored, invalid characters skipped,
 * concatenated padded groups decoded; returns B64_* problems seen. */
unsigned mime_b64_decode(const char *s, size_t n, struct buf *out)
{
	unsigned bad = 0, acc = 0;
	int q = 0, pad = 0;             /* sextets and '=' in the current group */
	bool padded = false;            /* a group just ended with padding */
	char tmp[3];
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (mime_is_space(c))
			continue;
		if (c == '=') {
			if (q == 2 && pad == 0) {
				tmp[0] = (char)(acc >> 4);
				mime_add(out, tmp, 1);
				pad = 1;
			} else if ((q == 2 && pad == 1) || (q == 3 && pad == 0)) {
				if (q == 3) {
					tmp[0] = (char)(acc >> 10);
					tmp[1] = (char)(acc >> 2);
					mime_add(out, tmp, 2);
				}
				q = pad = 0, acc = 0, padded = true;
			} else {
				bad |= B64_BAD_PAD;
			}
			continue;
		}
		int v = b64val(c);
		if (v < 0) {
			bad |= B64_BAD_CHAR;
			continue;
		}
		if (pad || padded) {    /* data after padding */
			bad |= B64_BAD_PAD;
			q = pad = 0, acc = 0, padded = false;
		}
		acc = acc << 6 | (unsigned)v;
		if (++q == 4) {
			tmp[0] = (char)(acc >> 16);
			tmp[1] = (char)(acc >> 8);
			tmp[2] = (char)acc;
			mime_add(out, tmp, 3);
			q = 0, acc = 0;
		}
	}
	if (pad || q == 1) {
		bad |= B64_BAD_PAD;
	} else if (q == 2 || q == 3) {   /* missing padding: keep the bytes */
		bad |= B64_BAD_PAD;
		tmp[0] = (char)(acc >> (q == 2 ? 4 : 10));
		tmp[1] = (char)(acc >> 2);
		mime_add(out, tmp, (size_t)(q - 1));
	}
	return bad;
}

/* Quoted-printable body; returns true if an invalid escape was seen. */
bool mime_qp_decode(const char *s, size_t n, struct buf *out)
{
	bool bad = false;
	size_t pos = 0;
	while (pos < n) {
		const char *nl = memchr(s + pos, '\n', n - pos);
		size_t next = nl ? (size_t)(nl - s) + 1 : n;
		size_t brk = nl ? (size_t)(nl - s) : n;
		if (nl && brk > pos && s[brk - 1] == '\r')
			brk--;
		size_t te = brk, i = pos, run = pos;
		while (te > pos && is_wsp(s[te - 1]))
			te--;               /* transport padding */
		bool soft = false;
		while (i < te) {
			if (s[i] != '=') {
				i++;
				continue;
			}
			mime_add(out, s + run, i - run);
			if (i + 1 == te) {
				soft = true;
				i++;
			} else if (i + 2 < te && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
				char c = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
				mime_add(out, &c, 1);
				i += 3;
			} else {
				mime_add(out, "=", 1);
				bad = true;
				i++;
			}
			run = i;
		}
		mime_add(out, s + run, te - run);
		if (!soft)
			mime_add(out, s + brk, next - brk);
		pos = next;
	}
	return bad;
}

/* RFC 2231 %XX; an invalid '%' stays as it is. */
static void pct_decode(const char *s, size_t n, struct buf *out)
{
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%' || i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
			continue;
		mime_add(out, s + run, i - run);
		char c = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
		buf_add(out, &c, 1);
		i += 2;
		run = i + 1;
	}
	mime_add(out, s + run, n - run);
}

/* ---- header fields ------------------------------------------------- */

static const char *next_line(const char *p, const char *end)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	return nl ? nl + 1 : end;
}

bool mime_empty_line(const char *p, size_t n)
{
	return (n == 1 && p[0] == '\n') || (n == 2 && p[0] == '\r' && p[1] == '\n');
}

static bool valid_name(const char *s, const char *e)
{
	for (; s < e; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* Value of a field: line breaks removed, surrounding whitespace trimmed. */
static void unfold(const char *s, const char *e, struct buf *out)
{
	buf_reset(out);
	while (s < e && mime_is_space(*s))
		s++;
	buf_reserve(out, (size_t)(e - s));
	for (; s < e; s++) {
		if (*s == '\n' || (*s == '\r' && s + 1 < e && s[1] == '\n'))
			continue;
		out->data[out->len++] = *s;
	}
	while (out->len && mime_is_space(out->data[out->len - 1]))
		out->len--;
	out->data[out->len] = 0;
}

void mime_hdr_begin(struct mime_hdr_iter *it, const char *head, size_t len)
{
	*it = (struct mime_hdr_iter){ .p = head, .end = head ? head + len : head };
}

int mime_hdr_next(struct mime_hdr_iter *it)
{
	while (it->p < it->end) {
		const char *line = it->p, *eol = next_line(line, it->end), *fend = eol;
		if (mime_empty_line(line, (size_t)(eol - line))) {
			it->p = it->end;
			return 0;
		}
		while (fend < it->end && is_wsp(*fend))
			fend = next_line(fend, it->end);
		it->p = fend;
		const char *colon = is_wsp(*line) ? NULL : memchr(line, ':', (size_t)(eol - line));
		const char *ne = colon;
		while (ne && ne > line && is_wsp(ne[-1]))
			ne--;
		if (!colon || ne == line || !valid_name(line, ne)) {
			it->flags |= MIME_BAD_HEADER;
			continue;
		}
		it->raw_len = (size_t)(fend - line);
		buf_reset(&it->name);
		buf_add(&it->name, line, (size_t)(ne - line));
		unfold(colon + 1, fend, &it->value);
		return 1;
	}
	return 0;
}

void mime_hdr_end(struct mime_hdr_iter *it)
{
	buf_free(&it->name);
	buf_free(&it->value);
}

int mime_hdr_find(const char *head, size_t len, const char *name, struct buf *out)
{
	struct mime_hdr_iter it;
	int found = 0;
	mime_hdr_begin(&it, head, len);
	while (!found && mime_hdr_next(&it))
		if (!strcasecmp(it.name.data, name)) {
			mime_add(out, it.value.data, it.value.len);
			found = 1;
		}
	mime_hdr_end(&it);
	return found;
}

/* ---- parameters (RFC 2045 5.1, RFC 2231) --------------------------- */

struct pspan {
	const char *s;
	size_t n;
	bool set, quoted, ext;
};

/* Skip whitespace and (nested) comments. */
size_t mime_skip_cfws(const char *v, size_t n, size_t i)
{
	while (i < n) {
		if (mime_is_space(v[i])) {
			i++;
			continue;
		}
		if (v[i] != '(')
			break;
		size_t depth = 0;
		for (; i < n; i++) {
			if (v[i] == '\\' && i + 1 < n)
				i++;
			else if (v[i] == '(')
				depth++;
			else if (v[i] == ')' && --depth == 0)
				break;
		}
		if (i < n)
			i++;
	}
	return i;
}

/* Index of the next ';' outside a quoted string, or n. */
static size_t skip_to_semi(const char *v, size_t n, size_t i)
{
	bool q = false;
	for (; i < n; i++) {
		if (q && v[i] == '\\' && i + 1 < n)
			i++;
		else if (v[i] == '"')
			q = !q;
		else if (!q && v[i] == ';')
			break;
	}
	return i;
}

/* v[i] is '"': set the inner span, return the index after the string. */
static size_t read_quoted(const char *v, size_t n, size_t i, struct pspan *sp)
{
	size_t s = ++i;
	for (; i < n; i++) {
		if (v[i] == '\\' && i + 1 < n)
			i++;
		else if (v[i] == '"')
			break;
	}
	*sp = (struct pspan){ .s = v + s, .n = i - s, .set = true, .quoted = true };
	return i < n ? i + 1 : n;
}

/* An unquoted value runs to ';' (lenient: spaces allowed), minus a
 * trailing comment introduced by whitespace and surrounding blanks. */
static size_t unquoted_len(const char *s, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (s[i] == '(' && mime_is_space(s[i - 1])) {
			n = i;
			break;
		}
	while (n && mime_is_space(s[n - 1]))
		n--;
	return n;
}

/* Append a span's octets, quoted-pair backslashes removed (only before
 * '"' and '\\': Windows paths keep theirs). */
static void add_span(struct buf *out, const struct pspan *sp)
{
	if (!sp->quoted) {
		mime_add(out, sp->s, sp->n);
		return;
	}
	size_t run = 0;
	for (size_t i = 0; i + 1 < sp->n; i++)
		if (sp->s[i] == '\\' && (sp->s[i + 1] == '"' || sp->s[i + 1] == '\\')) {
			mime_add(out, sp->s + run, i - run);
			run = ++i;
		}
	mime_add(out, sp->s + run, sp->n - run);
}

/* If attr names the wanted parameter, keep val as its plain form, its
 * RFC 2231 single form (name*=) or segment N (name*N= / name*N*=). */
static void classify(const char *attr, size_t alen, const char *name, const struct pspan *val,
                     struct pspan *plain, struct pspan *star, struct pspan *seg)
{
	const char *st = memchr(attr, '*', alen), *end = attr + alen;
	size_t blen = st ? (size_t)(st - attr) : alen, idx = 0;
	if (blen != strlen(name) || strncasecmp(attr, name, blen))
		return;
	if (!st) {
		if (!plain->set)
			*plain = *val;
		return;
	}
	const char *r = st + 1, *digits = r;
	if (r == end) {
		if (!star->set)
			*star = *val, star->ext = true;
		return;
	}
	for (; r < end && *r >= '0' && *r <= '9'; r++)
		if ((idx = idx * 10 + (size_t)(*r - '0')) >= MAX_SEGS)
			return;
	if (r == digits)
		return;
	bool ext = r < end && *r == '*';
	if (r + ext != end || seg[idx].set)
		return;
	seg[idx] = *val;
	seg[idx].ext = ext;
}

/*
 * Join spans 0..n-1; extended ones are %-decoded and the first may carry
 * charset'language'.  The octets are converted from that charset.
 */
static void join_segments(const struct pspan *seg, size_t n, struct buf *out)
{
	struct buf raw = {0}, tmp = {0};
	const char *cs = NULL;
	size_t cslen = 0;
	for (size_t k = 0; k < n; k++) {
		if (!seg[k].ext) {
			add_span(&raw, &seg[k]);
			continue;
		}
		buf_reset(&tmp);
		add_span(&tmp, &seg[k]);
		const char *s = mime_bstr(&tmp), *q1, *q2 = NULL;
		size_t len = tmp.len;
		if (k == 0 && (q1 = memchr(s, '\'', len)) &&
		    (q2 = memchr(q1 + 1, '\'', len - (size_t)(q1 + 1 - s)))) {
			cslen = (size_t)(q1 - s);
			cs = xstrndup(s, cslen);
			len -= (size_t)(q2 + 1 - s);
			s = q2 + 1;
		}
		pct_decode(s, len, &raw);
	}
	if (!cs || to_utf8(cs, cslen, mime_bstr(&raw), raw.len, out) < 0)
		mime_add(out, mime_bstr(&raw), raw.len);
	free((char *)cs);
	buf_free(&raw);
	buf_free(&tmp);
}

int mime_param_n(const char *v, size_t n, const char *name, struct buf *out)
{
	struct pspan plain = {0}, star = {0}, seg[MAX_SEGS] = {{0}};
	size_t i = skip_to_semi(v, n, 0);
	while (i < n) {
		i = mime_skip_cfws(v, n, i + 1);         /* v[i] was ';' */
		size_t as = i;
		while (i < n && mime_is_token(v[i]))
			i++;
		size_t ae = i;
		i = mime_skip_cfws(v, n, i);
		if (ae == as || i >= n || v[i] != '=') {
			i = skip_to_semi(v, n, i);
			continue;
		}
		i = mime_skip_cfws(v, n, i + 1);
		struct pspan val;
		if (i < n && v[i] == '"') {
			i = read_quoted(v, n, i, &val);
		} else {
			size_t e = skip_to_semi(v, n, i);
			val = (struct pspan){ .s = v + i, .n = unquoted_len(v + i, e - i), .set = true };
			i = e;
		}
		classify(v + as, ae - as, name, &val, &plain, &star, seg);
		i = skip_to_semi(v, n, i);
	}
	size_t nseg = 0;
	while (nseg < MAX_SEGS && seg[nseg].set)
		nseg++;
	if (nseg)
		join_segments(seg, nseg, out);
	else if (star.set)
		join_segments(&star, 1, out);
	else if (plain.set)
		add_span(out, &plain);
	else
		return 0;
	return 1;
}

int mime_param(const char *value, const char *name, struct buf *out)
{
	return value && name ? mime_param_n(value, strlen(value), name, out) : 0;
}

/* ---- RFC 2047 encoded-words ---------------------------------------- */

struct eword {
	const char *cs, *text;
	size_t cslen, tlen, end;
	char enc;
};

/* Is there an encoded-word =?cs?e?text?= at in[i]?  Its text holds no
 * '?' and no whitespace, so scanning stays linear over the input. */
static bool parse_eword(const char *in, size_t len, size_t i, struct eword *w)
{
	size_t j = i + 2, s = j;
	while (j < len && mime_is_token(in[j]))
		j++;
	if (j == s || j - s > 64 || j >= len || in[j] != '?')
		return false;
	w->cs = in + s, w->cslen = j - s;
	j++;
	if (j + 1 >= len || in[j + 1] != '?')
		return false;
	w->enc = mime_lower(in[j]);
	if (w->enc != 'b' && w->enc != 'q')
		return false;
	size_t t = j += 2;
	while (j < len && in[j] != '?' && (unsigned char)in[j] > ' ' && (unsigned char)in[j] < 0x7f)
		j++;
	if (j + 1 >= len || in[j] != '?' || in[j + 1] != '=')
		return false;
	w->text = in + t, w->tlen = j - t, w->end = j + 2;
	return true;
}

static bool decode_eword(const struct eword *w, struct buf *out)
{
	if (w->enc == 'b')
		return !(mime_b64_decode(w->text, w->tlen, out) & B64_BAD_CHAR);
	size_t run = 0;
	for (size_t i = 0; i < w->tlen; i++) {
		const char *t = w->text;
		if (t[i] == '_') {
			mime_add(out, t + run, i - run);
			buf_add(out, " ", 1);
			run = i + 1;
		} else if (t[i] == '=' && i + 2 < w->tlen && hexval(t[i + 1]) >= 0 && hexval(t[i + 2]) >= 0) {
			mime_add(out, t + run, i - run);
			char c = (char)(hexval(t[i + 1]) << 4 | hexval(t[i + 2]));
			buf_add(out, &c, 1);
			run = (i += 2) + 1;
		}
	}
	mime_add(out, w->text + run, w->tlen - run);
	return true;
}

/* Adjacent words in one charset, decoded but not yet converted. */
struct pending {
	struct buf raw;
	const char *cs;
	size_t cslen, from, to;
	bool on;
};

static void flush_words(struct pending *pw, const char *in, struct buf *out)
{
	if (!pw->on)
		return;
	if (to_utf8(pw->cs, pw->cslen, mime_bstr(&pw->raw), pw->raw.len, out) < 0)
		mime_add(out, in + pw->from, pw->to - pw->from);
	buf_reset(&pw->raw);
	pw->on = false;
}

void mime_decode_words(const char *in, size_t len, struct buf *out)
{
	struct pending pw = {0};
	struct buf tmp = {0};
	struct eword w;
	size_t i = 0, lit = 0;
	while (in && i + 1 < len) {
		if (in[i] != '=' || in[i + 1] != '?' || !parse_eword(in, len, i, &w)) {
			i++;
			continue;
		}
		buf_reset(&tmp);
		if (!decode_eword(&w, &tmp)) {
			i++;
			continue;
		}
		bool join = pw.on && all_space(in + lit, i - lit);
		if (!join || pw.cslen != w.cslen || strncasecmp(pw.cs, w.cs, w.cslen)) {
			flush_words(&pw, in, out);
			if (!join)
				mime_add(out, in + lit, i - lit);
			pw.on = true, pw.cs = w.cs, pw.cslen = w.cslen, pw.from = i;
		}
		mime_add(&pw.raw, mime_bstr(&tmp), tmp.len);
		pw.to = w.end;
		i = lit = w.end;
	}
	flush_words(&pw, in, out);
	if (in)
		mime_add(out, in + lit, len - lit);
	buf_free(&pw.raw);
	buf_free(&tmp);
}
