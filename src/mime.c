/*
 * mime.c - the MIME structure parser (see mime.h for the promises).
 *
 * One pass over the message, line by line.  A stack of open multiparts
 * (at most MIME_MAX_DEPTH) holds their boundaries; every line that starts
 * with "--" is trimmed once and compared in O(1) per open multipart, so
 * the whole parse is O(len * MIME_MAX_DEPTH) whatever the input.  Each
 * part's header block is examined once, when it ends, through the same
 * field iterator that filters use.  The decoders are in mime_decode.c.
 *
 * Nothing here relies on a NUL after the message, logs, or keeps state
 * between calls.
 */
#include "mime.h"
#include "mime_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- one part's header fields -------------------------------------- */

/* Copy s[0..n) lower-cased if it fits in dst[cap], else leave dst "". */
static void set_lower(char *dst, size_t cap, const char *s, size_t n)
{
	dst[0] = 0;
	if (n >= cap || memchr(s, 0, n))
		return;
	for (size_t i = 0; i < n; i++)
		dst[i] = mime_lower(s[i]);
	dst[n] = 0;
}

/* The leading token of a structured value; returns its length. */
static size_t lead_token(const char *v, size_t n, size_t *start)
{
	size_t i = *start = mime_skip_cfws(v, n, 0);
	while (i < n && mime_is_token(v[i]))
		i++;
	return i - *start;
}

static void set_type(struct mime_part *p, const char *v, size_t n)
{
	size_t ts, tl = lead_token(v, n, &ts);
	size_t i = mime_skip_cfws(v, n, ts + tl);
	if (!tl || i >= n || v[i] != '/')
		return;                 /* invalid: the default stands */
	size_t ss = i = mime_skip_cfws(v, n, i + 1);
	while (i < n && mime_is_token(v[i]))
		i++;
	if (i == ss)
		return;
	size_t cap = sizeof p->content_type - 1, k = 0;
	for (size_t j = ts; j < ts + tl && k < cap; j++)
		p->content_type[k++] = mime_lower(v[j]);
	if (k < cap)
		p->content_type[k++] = '/';
	for (size_t j = ss; j < i && k < cap; j++)
		p->content_type[k++] = mime_lower(v[j]);
	p->content_type[k] = 0;
}

static enum mime_encoding parse_cte(const char *v, size_t n)
{
	static const struct { const char *name; enum mime_encoding enc; } names[] = {
		{ .name = "7bit", .enc = MIME_ENC_7BIT },
		{ .name = "8bit", .enc = MIME_ENC_8BIT },
		{ .name = "binary", .enc = MIME_ENC_BINARY },
		{ .name = "base64", .enc = MIME_ENC_BASE64 },
		{ .name = "quoted-printable", .enc = MIME_ENC_QP },
	};
	size_t s, l = lead_token(v, n, &s);
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (l == strlen(names[i].name) && !strncasecmp(v + s, names[i].name, l))
			return names[i].enc;
	return MIME_ENC_UNKNOWN;
}

/* Store s as valid UTF-8, cut on a character boundary to fit. */
static void set_filename(struct mime_part *p, const char *s, size_t n)
{
	struct buf clean = {0};
	mime_add_utf8_clean(&clean, s, n);
	size_t len = clean.len;
	if (len >= sizeof p->filename) {
		len = sizeof p->filename - 1;
		while (len && ((unsigned char)clean.data[len] & 0xC0) == 0x80)
			len--;
	}
	if (len)
		memcpy(p->filename, clean.data, len);
	p->filename[len] = 0;
	buf_free(&clean);
}

static void set_boundary(struct mime_part *p, const char *v, size_t n)
{
	struct buf b = {0};
	if (!mime_param_n(v, n, "boundary", &b))
		b.len = 0;
	while (b.len && mime_is_space(b.data[b.len - 1]))
		b.len--;                /* a boundary cannot end in space (RFC 2046) */
	if (!b.len)
		p->flags |= MIME_NO_BOUNDARY;
	else if (b.len >= sizeof p->boundary || memchr(b.data, 0, b.len) ||
	         memchr(b.data, '\r', b.len) || memchr(b.data, '\n', b.len))
		p->flags |= MIME_BAD_BOUNDARY;
	else
		memcpy(p->boundary, b.data, b.len), p->boundary[b.len] = 0;
	buf_free(&b);
}

/*
 * Fill p's content fields from its header block.  Returns true if p is a
 * multipart whose children are to be parsed.
 */
static bool analyze(struct mime_part *p, bool in_digest)
{
	struct mime_hdr_iter it;
	struct buf f[3] = {{0}};        /* Content-Type, -Transfer-Encoding, -Disposition */
	static const char *const names[3] = {
		"content-type", "content-transfer-encoding", "content-disposition",
	};
	bool have[3] = {0};
	mime_hdr_begin(&it, p->head, p->head_len);
	while (mime_hdr_next(&it)) {
		p->nfields++;
		if (it.raw_len > p->longest_field)
			p->longest_field = it.raw_len;
		for (int k = 0; k < 3; k++)
			if (!have[k] && !strcasecmp(it.name.data, names[k])) {
				have[k] = true;
				mime_add(&f[k], it.value.data, it.value.len);
			}
	}
	p->flags |= it.flags;
	mime_hdr_end(&it);

	const char *ct = mime_bstr(&f[0]), *cd = mime_bstr(&f[2]);
	strcpy(p->content_type, in_digest ? "message/rfc822" : "text/plain");
	set_type(p, ct, f[0].len);
	struct buf b = {0};
	if (mime_param_n(ct, f[0].len, "charset", &b))
		set_lower(p->charset, sizeof p->charset, mime_bstr(&b), b.len);
	p->encoding = have[1] ? parse_cte(mime_bstr(&f[1]), f[1].len) : MIME_ENC_7BIT;
	if (p->encoding == MIME_ENC_UNKNOWN)
		p->flags |= MIME_BAD_ENCODING;
	size_t ds, dl = lead_token(cd, f[2].len, &ds);
	set_lower(p->disposition, sizeof p->disposition, cd + ds, dl);

	buf_reset(&b);
	if (!mime_param_n(cd, f[2].len, "filename", &b) || !b.len) {
		buf_reset(&b);
		mime_param_n(ct, f[0].len, "name", &b);
	}
	struct buf words = {0};
	mime_decode_words(mime_bstr(&b), b.len, &words);
	set_filename(p, mime_bstr(&words), words.len);
	buf_free(&words);
	buf_free(&b);

	bool container = false;
	if (!strncmp(p->content_type, "multipart/", 10)) {
		set_boundary(p, ct, f[0].len);
		if (p->boundary[0] && p->depth >= MIME_MAX_DEPTH)
			p->flags |= MIME_TOO_DEEP;
		else if (p->boundary[0])
			container = true;
	}
	for (int k = 0; k < 3; k++)
		buf_free(&f[k]);
	return container;
}

/* ---- structure ----------------------------------------------------- */

struct frame {
	int part;               /* the multipart */
	bool epilogue;          /* its closing delimiter was seen */
	bool digest;            /* children default to message/rfc822 */
	int nchildren;
	size_t blen;
	char bnd[80];
};

struct parser {
	const char *msg;
	size_t len;
	struct mime_message *m;
	int cap;                /* of m->parts */
	struct frame fr[MIME_MAX_DEPTH];
	int nfr;
	int cur;                /* open part (leaf or still in its header), -1 none */
	bool in_header;
};

static int new_part(struct parser *ps, int parent, int depth, size_t off)
{
	struct mime_message *m = ps->m;
	if (m->nparts == ps->cap) {
		ps->cap = ps->cap * 2 < MIME_MAX_PARTS ? ps->cap * 2 : MIME_MAX_PARTS;
		m->parts = xrealloc(m->parts, (size_t)ps->cap * sizeof *m->parts);
	}
	int i = m->nparts++;
	m->parts[i] = (struct mime_part){
		.index = i, .parent = parent, .depth = depth,
		.head = ps->msg + off, .body = ps->msg + off,
	};
	return i;
}

static bool in_digest(const struct parser *ps)
{
	return ps->nfr > 0 && ps->fr[ps->nfr - 1].digest;
}

static size_t off_of(const struct parser *ps, const char *p)
{
	return (size_t)(p - ps->msg);
}

/* Validate a leaf's transfer encoding (decoding to nowhere). */
static void check_body(struct mime_part *p)
{
	if (p->encoding == MIME_ENC_BASE64 && mime_b64_decode(p->body, p->body_len, NULL))
		p->flags |= MIME_BAD_BASE64;
	else if (p->encoding == MIME_ENC_QP && mime_qp_decode(p->body, p->body_len, NULL))
		p->flags |= MIME_BAD_QP;
}

/* The empty line msg[line..next) ends the current part's header. */
static void end_header(struct parser *ps, size_t line, size_t next)
{
	struct mime_part *p = &ps->m->parts[ps->cur];
	p->head_len = line - off_of(ps, p->head);
	p->body = ps->msg + next;
	ps->in_header = false;
	if (!analyze(p, in_digest(ps)))
		return;
	if (ps->nfr == MIME_MAX_DEPTH) {        /* cannot happen: analyze checks depth */
		p->flags |= MIME_TOO_DEEP;
		return;
	}
	struct frame *f = &ps->fr[ps->nfr++];
	*f = (struct frame){
		.part = ps->cur,
		.digest = !strcmp(p->content_type, "multipart/digest"),
		.blen = strlen(p->boundary),
	};
	memcpy(f->bnd, p->boundary, sizeof f->bnd);
	p->multipart = true;
	ps->cur = -1;
}

/* The body ends at e; an empty body right before a boundary starts at e
 * too, so that no part reaches beyond its parent's end. */
static void end_body(const struct parser *ps, struct mime_part *p, size_t e)
{
	size_t b = off_of(ps, p->body);
	if (e < b)
		p->body = ps->msg + e, b = e;
	p->body_len = e - b;
}

/* End the open part at e (before the line end that belongs to the
 * boundary); a part still in its header is all header. */
static void close_cur(struct parser *ps, size_t e)
{
	if (ps->cur < 0)
		return;
	struct mime_part *p = &ps->m->parts[ps->cur];
	size_t h = off_of(ps, p->head);
	if (ps->in_header) {
		if (e < h)              /* empty, right before the boundary */
			p->head = ps->msg + e, h = e;
		p->head_len = e - h;
		p->body = p->head + p->head_len;
		p->body_len = 0;
		p->flags |= MIME_BAD_HEADER;
		if (analyze(p, in_digest(ps)))
			p->multipart = true, p->flags |= MIME_BAD_BOUNDARY;
	} else {
		end_body(ps, p, e);
		check_body(p);
	}
	ps->cur = -1;
	ps->in_header = false;
}

static void pop(struct parser *ps, size_t e)
{
	struct frame *f = &ps->fr[--ps->nfr];
	struct mime_part *p = &ps->m->parts[f->part];
	end_body(ps, p, e);
	if (!f->epilogue || !f->nchildren)
		p->flags |= MIME_BAD_BOUNDARY;
}

/* Does msg[line..next) delimit an open multipart?  Innermost first. */
static bool match_boundary(const struct parser *ps, size_t line, size_t next, int *k, bool *closing)
{
	const char *l = ps->msg + line;
	size_t n = next - line;
	if (n < 3 || l[0] != '-' || l[1] != '-')
		return false;
	while (n > 2 && (mime_is_space(l[n - 1])))
		n--;
	for (int j = ps->nfr - 1; j >= 0; j--) {
		const struct frame *f = &ps->fr[j];
		if (f->epilogue || n < f->blen + 2 || memcmp(l + 2, f->bnd, f->blen))
			continue;
		if (n == f->blen + 2 || (n == f->blen + 4 && l[n - 2] == '-' && l[n - 1] == '-')) {
			*k = j;
			*closing = n == f->blen + 4;
			return true;
		}
	}
	return false;
}

static void on_boundary(struct parser *ps, int k, bool closing, size_t line, size_t next)
{
	size_t e = line;        /* the line end before the boundary is part of it */
	if (e > 0 && ps->msg[e - 1] == '\n' && --e > 0 && ps->msg[e - 1] == '\r')
		e--;
	close_cur(ps, e);
	while (ps->nfr > k + 1)
		pop(ps, e);
	struct frame *f = &ps->fr[k];
	struct mime_part *mp = &ps->m->parts[f->part];
	if (closing) {
		f->epilogue = true;
		return;
	}
	f->nchildren++;
	if (ps->m->nparts >= MIME_MAX_PARTS) {
		mp->flags |= MIME_TOO_MANY;     /* skipped up to the next boundary */
		return;
	}
	ps->cur = new_part(ps, f->part, mp->depth + 1, next);
	ps->in_header = true;
}

int mime_parse(const char *msg, size_t len, struct mime_message *out)
{
	struct parser ps = {
		.msg = msg ? msg : "", .len = msg ? len : 0, .m = out,
		.cap = 8, .cur = 0, .in_header = true,
	};
	*out = (struct mime_message){ .parts = xmalloc(8 * sizeof *out->parts) };
	new_part(&ps, -1, 0, 0);
	size_t pos = 0;
	while (pos < ps.len) {
		const char *nl = memchr(ps.msg + pos, '\n', ps.len - pos);
		size_t next = nl ? off_of(&ps, nl) + 1 : ps.len;
		int k;
		bool closing;
		if (ps.nfr && match_boundary(&ps, pos, next, &k, &closing))
			on_boundary(&ps, k, closing, pos, next);
		else if (ps.cur >= 0 && ps.in_header && mime_empty_line(ps.msg + pos, next - pos))
			end_header(&ps, pos, next);
		pos = next;
	}
	close_cur(&ps, ps.len);
	while (ps.nfr)
		pop(&ps, ps.len);
	for (int i = 0; i < out->nparts; i++)
		out->flags |= out->parts[i].flags;
	return 0;
}

void mime_message_free(struct mime_message *m)
{
	free(m->parts);
	*m = (struct mime_message){0};
}

void mime_decode_body(const struct mime_part *p, struct buf *out, unsigned *flags)
{
	unsigned bad = 0;
	if (p->multipart || !p->body_len)
		mime_add(out, p->body, p->body_len);
	else if (p->encoding == MIME_ENC_BASE64)
		bad = mime_b64_decode(p->body, p->body_len, out) ? MIME_BAD_BASE64 : 0;
	else if (p->encoding == MIME_ENC_QP)
		bad = mime_qp_decode(p->body, p->body_len, out) ? MIME_BAD_QP : 0;
	else
		mime_add(out, p->body, p->body_len);
	if (flags)
		*flags |= bad;
}
