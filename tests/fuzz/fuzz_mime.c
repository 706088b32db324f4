/*
 * fuzz_mime.c - libFuzzer harness for the MIME parser (src/mime.c,
 * src/mime_decode.c).
 *
 * The input is a whole message in a heap buffer of exactly its length
 * (mime.h: "the buffer need not be NUL-terminated"), so ASan catches a
 * read one byte past it.  Every entry point runs on it: mime_parse(),
 * then for each part mime_decode_body(), the header iterator over its
 * head, mime_hdr_find() and mime_param() for the fields filters read,
 * and mime_decode_words() on every header value and on the file name.
 *
 * Checked, as mime.h promises: the structure invariants (as in
 * tests/unit/test-mime.c: indexes, parents before children, depth,
 * heads and bodies inside the buffer and inside the parent's body, the
 * message flags the OR of the parts', NUL-terminated fields, a UTF-8
 * file name); a decoded base64/QP body is never longer than the encoded
 * one; the header iterator returns names without ':' and values without
 * a line break.  Time O(len * depth) is what libFuzzer's -timeout checks.
 */
#include "fuzz_common.h"
#include "mime.h"

#include <stdbool.h>

static bool valid_utf8(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	while (*u) {
		int n = *u < 0x80 ? 0 : (*u & 0xE0) == 0xC0 ? 1 : (*u & 0xF0) == 0xE0 ? 2
		      : (*u & 0xF8) == 0xF0 ? 3 : -1;
		if (n < 0 || (n == 1 && *u < 0xC2))
			return false;
		for (u++; n > 0; n--, u++)
			if ((*u & 0xC0) != 0x80)
				return false;
	}
	return true;
}

static const char *invariants(const char *msg, size_t len, const struct mime_message *m)
{
	unsigned all = 0;
	if (m->nparts < 1 || m->nparts > MIME_MAX_PARTS)
		return "nparts out of range";
	if (m->parts[0].parent != -1 || m->parts[0].depth != 0)
		return "message is not the root";
	for (int i = 0; i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];
		all |= p->flags;
		if (p->index != i)
			return "index";
		if (p->head < msg || p->head_len > len || p->head + p->head_len > msg + len)
			return "head out of the message";
		if (p->body < msg || p->body_len > len || p->body + p->body_len > msg + len)
			return "body out of the message";
		if (p->head + p->head_len > p->body)
			return "body starts inside the head";
		if (strnlen(p->content_type, sizeof p->content_type) == sizeof p->content_type ||
		    strnlen(p->charset, sizeof p->charset) == sizeof p->charset ||
		    strnlen(p->boundary, sizeof p->boundary) == sizeof p->boundary ||
		    strnlen(p->disposition, sizeof p->disposition) == sizeof p->disposition ||
		    strnlen(p->filename, sizeof p->filename) == sizeof p->filename)
			return "unterminated string field";
		if (!valid_utf8(p->filename))
			return "filename not UTF-8";
		if (i == 0)
			continue;
		if (p->parent < 0 || p->parent >= i)
			return "parent not before child";
		const struct mime_part *up = &m->parts[p->parent];
		if (!up->multipart)
			return "parent is not a multipart";
		if (p->depth != up->depth + 1 || p->depth > MIME_MAX_DEPTH)
			return "depth";
		if (p->head < up->body || p->body + p->body_len > up->body + up->body_len)
			return "child outside its parent's body";
	}
	if (all != m->flags)
		return "message flags are not the OR of the parts'";
	return NULL;
}

static void headers(const struct mime_part *p)
{
	struct mime_hdr_iter it;
	mime_hdr_begin(&it, p->head, p->head_len);
	while (mime_hdr_next(&it)) {
		if (!it.name.data || memchr(it.name.data, ':', it.name.len))
			fuzz_fail("header name empty or with a colon");
		if (it.value.len && (memchr(it.value.data, '\n', it.value.len)))
			fuzz_fail("unfolded header value still holds a LF");
		struct buf d = {0};
		mime_decode_words(it.value.data ? it.value.data : "", it.value.len, &d);
		buf_free(&d);
	}
	mime_hdr_end(&it);

	static const char *const fields[] = { "Content-Type", "Content-Disposition", "Subject" };
	static const char *const params[] = { "boundary", "charset", "name", "filename" };
	for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
		struct buf v = {0};
		if (mime_hdr_find(p->head, p->head_len, fields[f], &v) && v.data) {
			for (size_t k = 0; k < sizeof params / sizeof params[0]; k++) {
				struct buf pv = {0};
				(void)mime_param(v.data, params[k], &pv);
				buf_free(&pv);
			}
		}
		buf_free(&v);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *msg = malloc(size ? size : 1);
	memcpy(msg, data, size);
	struct mime_message m;
	mime_parse(msg, size, &m);
	const char *bad = invariants(msg, size, &m);
	if (bad)
		fuzz_fail("mime_parse: %s", bad);
	for (int i = 0; i < m.nparts; i++) {
		const struct mime_part *p = &m.parts[i];
		struct buf body = {0};
		unsigned flags = 0;
		mime_decode_body(p, &body, &flags);
		if ((p->encoding == MIME_ENC_BASE64 || p->encoding == MIME_ENC_QP) && body.len > p->body_len)
			fuzz_fail("part %d: decoded body (%zu) longer than encoded (%zu)", i, body.len,
			          p->body_len);
		if (!(p->encoding == MIME_ENC_BASE64 || p->encoding == MIME_ENC_QP) &&
		    (body.len != p->body_len || (body.len && memcmp(body.data, p->body, body.len))))
			fuzz_fail("part %d: an unencoded body is not copied as is", i);
		buf_free(&body);
		headers(p);
		struct buf fn = {0};
		mime_decode_words(p->filename, strlen(p->filename), &fn);
		buf_free(&fn);
	}
	mime_message_free(&m);
	free(msg);
	return 0;
}
