/*
 * test-mime.c - table-driven tests of the MIME parser (core/mime.c).
 *
 * Tables: whole messages (structure, types, filenames, decoded bodies,
 * flags), body decoding, RFC 2047 words, parameters (RFC 2231), header
 * fields, adversarial inputs that must stay fast.  Every parse is also
 * checked against the structural invariants mime.h promises, and a
 * deterministic mutation loop feeds ~200,000 damaged variants of the
 * message cases through every entry point: run under ASan/UBSan, it
 * shows that no input makes the parser read out of bounds or crash.
 *
 * Messages are written with "\n"; unless a case says .lf, both the
 * message and its expected bodies get "\r\n" as they arrive over SMTP.
 */
#include "mime.h"
#include "tap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- helpers ------------------------------------------------------- */

static void crlf(const char *s, bool lf, struct buf *out)
{
	for (; *s; s++) {
		if (*s == '\n' && !lf)
			buf_add(out, "\r", 1);
		buf_add(out, s, 1);
	}
	if (!out->data)
		buf_add(out, "", 0);
}

static const char *bstr_or(const struct buf *b)
{
	return b->data ? b->data : "";
}

/* Does a string field differ from the expected one (NULL: unchecked)? */
static bool differs(char *why, size_t n, int i, const char *what, const char *got, const char *want)
{
	if (!want || !strcmp(got, want))
		return false;
	snprintf(why, n, "part %d %s '%.300s', want '%.300s'", i, what, got, want);
	return true;
}

static bool valid_utf8(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	while (*u) {
		int n = *u < 0x80 ? 0 : (*u & 0xE0) == 0xC0 ? 1 : (*u & 0xF0) == 0xE0 ? 2 : (*u & 0xF8) == 0xF0 ? 3 : -1;
		if (n < 0 || (n && *u < 0xC2 && n == 1))
			return false;
		for (u++; n > 0; n--, u++)
			if ((*u & 0xC0) != 0x80)
				return false;
	}
	return true;
}

/* The promises of mime.h about any parse result; NULL if all hold. */
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

/* ---- whole messages ------------------------------------------------ */

struct want_part {
	const char *type;               /* NULL ends the list */
	const char *charset, *filename, *disposition, *boundary; /* NULL: unchecked */
	const char *body;               /* decoded body, NULL: unchecked */
	size_t body_len;                /* 0: strlen(body) (and CRLF applies) */
	int parent;                     /* checked for parts after the first */
	bool multipart;
	enum mime_encoding enc;
	unsigned flags;                 /* this part's flags, exactly */
};

struct msg_case {
	const char *label;
	const char *msg;
	void (*build)(struct buf *);    /* instead of msg */
	bool lf;                        /* keep bare LF line ends */
	int nparts;
	unsigned flags;                 /* the message's flags, exactly */
	struct want_part p[8];
};

#define MIXED(b) "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"" b "\"\n\n"

static void build_deep(struct buf *b)
{
	for (int i = 0; i < 25; i++)
		buf_addf(b, "Content-Type: multipart/mixed; boundary=\"d%d\"\r\n\r\n--d%d\r\n", i, i);
	buf_adds(b, "Content-Type: text/plain\r\n\r\ndeep\r\n");
	for (int i = 24; i >= 0; i--)
		buf_addf(b, "--d%d--\r\n", i);
}

static void build_many(struct buf *b)
{
	buf_adds(b, "Content-Type: multipart/mixed; boundary=m\r\n\r\n");
	for (int i = 0; i < 1500; i++)
		buf_addf(b, "--m\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i);
	buf_adds(b, "--m--\r\n");
}

static void build_long_name(struct buf *b)
{
	buf_adds(b, "Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n"
	            " filename*=utf-8''a");
	for (int i = 0; i < 200; i++)
		buf_adds(b, "%E2%82%AC");
	buf_adds(b, "\r\n\r\nx\r\n");
}

static const struct msg_case msg_cases[] = {
	{ .label = "plain text message",
	  .msg = "Subject: hi\nFrom: a@example.org\n\nHello\nWorld\n",
	  .nparts = 1, .p = { { .type = "text/plain", .charset = "", .filename = "", .body = "Hello\nWorld\n" } } },
	{ .label = "plain text, charset and quoted-printable",
	  .msg = "Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
	         "Caf=E9 =\nau lait\n",
	  .nparts = 1, .p = { { .type = "text/plain", .charset = "iso-8859-1", .enc = MIME_ENC_QP,
	                        .body = "Caf\xe9 au lait\n" } } },
	{ .label = "empty body",
	  .msg = "Subject: x\n\n", .nparts = 1, .p = { { .type = "text/plain", .body = "" } } },
	{ .label = "header section never ends",
	  .msg = "Subject: x\nFrom: y\n", .nparts = 1, .flags = MIME_BAD_HEADER,
	  .p = { { .type = "text/plain", .body = "", .flags = MIME_BAD_HEADER } } },
	{ .label = "empty message",
	  .msg = "", .nparts = 1, .flags = MIME_BAD_HEADER,
	  .p = { { .type = "text/plain", .body = "", .flags = MIME_BAD_HEADER } } },
	{ .label = "header line without colon",
	  .msg = "Subject: x\nthis is not a header\nContent-Type: text/html\n\nbody\n",
	  .nparts = 1, .flags = MIME_BAD_HEADER,
	  .p = { { .type = "text/html", .body = "body\n", .flags = MIME_BAD_HEADER } } },
	{ .label = "mbox From_ line is a bad header",
	  .msg = "From someone Mon Jan  1 00:00:00 2024\nSubject: x\n\nb\n", .nparts = 1, .flags = MIME_BAD_HEADER,
	  .p = { { .type = "text/plain", .body = "b\n", .flags = MIME_BAD_HEADER } } },
	{ .label = "stray continuation line first",
	  .msg = " folded: nothing\nSubject: x\n\nb\n", .nparts = 1, .flags = MIME_BAD_HEADER,
	  .p = { { .type = "text/plain", .flags = MIME_BAD_HEADER } } },
	{ .label = "multipart/mixed: text and base64 attachment",
	  .msg = MIXED("b1")
	         "This is a preamble.\n"
	         "--b1\nContent-Type: text/plain; charset=utf-8\n\nHello\n"
	         "--b1\nContent-Type: application/pdf; name=\"ignored.pdf\"\nContent-Transfer-Encoding: base64\n"
	         "Content-Disposition: attachment; filename=\"report.pdf\"\n\nAAEC\n//5Q\nREY=\n"
	         "--b1--\nepilogue\n",
	  .nparts = 3,
	  .p = { { .type = "multipart/mixed", .multipart = true, .boundary = "b1", .parent = -1 },
	         { .type = "text/plain", .charset = "utf-8", .body = "Hello" },
	         { .type = "application/pdf", .enc = MIME_ENC_BASE64, .filename = "report.pdf",
	           .disposition = "attachment", .body = "\x00\x01\x02\xff\xfePDF", .body_len = 8 } } },
	{ .label = "nested alternative inside mixed",
	  .msg = MIXED("outer")
	         "--outer\nContent-Type: multipart/alternative; boundary=inner\n\n"
	         "--inner\nContent-Type: text/plain\n\nplain\n"
	         "--inner\nContent-Type: text/html\n\n<p>html</p>\n"
	         "--inner--\n"
	         "--outer\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=a.bin\n\nxyz\n"
	         "--outer--\n",
	  .nparts = 5,
	  .p = { { .type = "multipart/mixed", .multipart = true },
	         { .type = "multipart/alternative", .multipart = true, .boundary = "inner", .parent = 0 },
	         { .type = "text/plain", .parent = 1, .body = "plain" },
	         { .type = "text/html", .parent = 1, .body = "<p>html</p>" },
	         { .type = "application/octet-stream", .parent = 0, .filename = "a.bin", .body = "xyz" } } },
	{ .label = "missing closing boundary",
	  .msg = MIXED("b") "--b\n\none\n--b\n\ntwo\n",
	  .nparts = 3, .flags = MIME_BAD_BOUNDARY,
	  .p = { { .type = "multipart/mixed", .multipart = true, .flags = MIME_BAD_BOUNDARY },
	         { .type = "text/plain", .body = "one" },
	         { .type = "text/plain", .body = "two\n" } } },
	{ .label = "multipart without boundary parameter",
	  .msg = "Content-Type: multipart/mixed\n\n--b\n\nx\n--b--\n",
	  .nparts = 1, .flags = MIME_NO_BOUNDARY,
	  .p = { { .type = "multipart/mixed", .multipart = false, .boundary = "", .flags = MIME_NO_BOUNDARY,
	           .body = "--b\n\nx\n--b--\n" } } },
	{ .label = "multipart with empty boundary",
	  .msg = "Content-Type: multipart/mixed; boundary=\"\"\n\n--\n\nx\n",
	  .nparts = 1, .flags = MIME_NO_BOUNDARY, .p = { { .type = "multipart/mixed", .flags = MIME_NO_BOUNDARY } } },
	{ .label = "boundary longer than 79 octets",
	  .msg = "Content-Type: multipart/mixed; boundary=\"0123456789012345678901234567890123456789"
	         "01234567890123456789012345678901234567890\"\n\nx\n",
	  .nparts = 1, .flags = MIME_BAD_BOUNDARY, .p = { { .type = "multipart/mixed", .flags = MIME_BAD_BOUNDARY } } },
	{ .label = "boundary lines with trailing whitespace",
	  .msg = MIXED("b") "--b  \t\n\none\n--b \n\ntwo\n--b--\t \n",
	  .nparts = 3, .p = { { .type = "multipart/mixed", .multipart = true },
	                      { .type = "text/plain", .body = "one" },
	                      { .type = "text/plain", .body = "two" } } },
	{ .label = "wrong boundary: no part found",
	  .msg = MIXED("xyz") "--abc\n\nbody\n--abc--\n",
	  .nparts = 1, .flags = MIME_BAD_BOUNDARY,
	  .p = { { .type = "multipart/mixed", .multipart = true, .flags = MIME_BAD_BOUNDARY } } },
	{ .label = "closing boundary only: no part found",
	  .msg = MIXED("b") "--b--\n", .nparts = 1, .flags = MIME_BAD_BOUNDARY,
	  .p = { { .type = "multipart/mixed", .multipart = true, .flags = MIME_BAD_BOUNDARY } } },
	{ .label = "multipart message without body",
	  .msg = MIXED("b"), .nparts = 1, .flags = MIME_BAD_BOUNDARY,
	  .p = { { .type = "multipart/mixed", .multipart = true, .flags = MIME_BAD_BOUNDARY } } },
	{ .label = "boundary-like lines that are not boundaries",
	  .msg = MIXED("b") "--b\n\n--bx\n--b-\n--b--x\n-- b\n--b x\n--b\n\nz\n--b--\n",
	  .nparts = 3, .p = { { .type = "multipart/mixed", .multipart = true },
	                      { .type = "text/plain", .body = "--bx\n--b-\n--b--x\n-- b\n--b x" },
	                      { .type = "text/plain", .body = "z" } } },
	{ .label = "preamble and epilogue are not parts",
	  .msg = MIXED("b") "pre\n--b\n--b\n\nin\n--b--\npost\n--b\n\nnot a part\n",
	  .nparts = 3, .flags = MIME_BAD_HEADER,
	  .p = { { .type = "multipart/mixed", .multipart = true },
	         { .type = "text/plain", .body = "", .flags = MIME_BAD_HEADER },
	         { .type = "text/plain", .body = "in" } } },
	{ .label = "part without headers",
	  .msg = MIXED("b") "--b\n\nbody only\n--b--\n", .nparts = 2,
	  .p = { { .type = "multipart/mixed", .multipart = true }, { .type = "text/plain", .body = "body only" } } },
	{ .label = "part without empty line is all header",
	  .msg = MIXED("b") "--b\nContent-Type: text/html\n--b--\n", .nparts = 2, .flags = MIME_BAD_HEADER,
	  .p = { { .type = "multipart/mixed", .multipart = true },
	         { .type = "text/html", .body = "", .flags = MIME_BAD_HEADER } } },
	{ .label = "text instead of headers after a boundary",
	  .msg = MIXED("b") "--b\nHello there\n--b--\n", .nparts = 2, .flags = MIME_BAD_HEADER,
	  .p = { { .type = "multipart/mixed", .multipart = true },
	         { .type = "text/plain", .body = "", .flags = MIME_BAD_HEADER } } },
	{ .label = "multipart header cut by a boundary",
	  .msg = MIXED("b") "--b\nContent-Type: multipart/mixed; boundary=c\n--b--\n",
	  .nparts = 2, .flags = MIME_BAD_HEADER | MIME_BAD_BOUNDARY,
	  .p = { { .type = "multipart/mixed", .multipart = true },
	         { .type = "multipart/mixed", .multipart = true, .flags = MIME_BAD_HEADER | MIME_BAD_BOUNDARY } } },
	{ .label = "empty line before boundary kept in the body",
	  .msg = MIXED("b") "--b\n\nline\n\n--b--\n", .nparts = 2,
	  .p = { { .type = "multipart/mixed", .multipart = true }, { .type = "text/plain", .body = "line\n" } } },
	{ .label = "empty part body",
	  .msg = MIXED("b") "--b\nContent-Type: text/plain\n\n--b--\n", .nparts = 2,
	  .p = { { .type = "multipart/mixed", .multipart = true }, { .type = "text/plain", .body = "" } } },
	{ .label = "outer boundary ends an unclosed inner multipart",
	  .msg = MIXED("o") "--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\n\na\n"
	         "--o\n\nb\n--o--\n",
	  .nparts = 4, .flags = MIME_BAD_BOUNDARY,
	  .p = { { .type = "multipart/mixed", .multipart = true },
	         { .type = "multipart/alternative", .multipart = true, .flags = MIME_BAD_BOUNDARY },
	         { .type = "text/plain", .parent = 1, .body = "a" },
	         { .type = "text/plain", .parent = 0, .body = "b" } } },
	{ .label = "outer boundary is a prefix of the inner one",
	  .msg = MIXED("b") "--b\nContent-Type: multipart/related; boundary=b1\n\n--b1\n\nx\n--b1\n\ny\n--b1--\n"
	         "--b\n\nz\n--b--\n",
	  .nparts = 5, .p = { { .type = "multipart/mixed", .multipart = true },
	                      { .type = "multipart/related", .multipart = true },
	                      { .type = "text/plain", .parent = 1, .body = "x" },
	                      { .type = "text/plain", .parent = 1, .body = "y" },
	                      { .type = "text/plain", .parent = 0, .body = "z" } } },
	{ .label = "inner boundary equal to the outer one",
	  .msg = MIXED("b") "--b\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n--b\n\ny\n--b--\n",
	  .nparts = 4, .p = { { .type = "multipart/mixed", .multipart = true },
	                      { .type = "multipart/mixed", .multipart = true },
	                      { .type = "text/plain", .parent = 1, .body = "x" },
	                      { .type = "text/plain", .parent = 0, .body = "y" } } },
	{ .label = "inner epilogue ends at the outer boundary",
	  .msg = MIXED("o") "--o\nContent-Type: multipart/mixed; boundary=i\n\n--i\n\na\n--i--\nepi\n--i\n--o--\n",
	  .nparts = 3, .p = { { .type = "multipart/mixed", .multipart = true },
	                      { .type = "multipart/mixed", .multipart = true },
	                      { .type = "text/plain", .parent = 1, .body = "a" } } },
	{ .label = "unknown multipart subtype is a container",
	  .msg = "Content-Type: multipart/x-whatever; boundary=q\n\n--q\n\nx\n--q--\n", .nparts = 2,
	  .p = { { .type = "multipart/x-whatever", .multipart = true }, { .type = "text/plain", .body = "x" } } },
	{ .label = "multipart/digest children default to message/rfc822",
	  .msg = "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: m1\n\nhi\n"
	         "--d\nContent-Type: text/plain\n\nnote\n--d--\n",
	  .nparts = 3, .p = { { .type = "multipart/digest", .multipart = true },
	                      { .type = "message/rfc822", .body = "Subject: m1\n\nhi" },
	                      { .type = "text/plain", .body = "note" } } },
	{ .label = "message/rfc822 is a leaf",
	  .msg = MIXED("b") "--b\nContent-Type: message/rfc822\n\n" MIXED("c") "--c\n\ninner\n--c--\n--b--\n",
	  .nparts = 2, .p = { { .type = "multipart/mixed", .multipart = true },
	                      { .type = "message/rfc822", .multipart = false } } },
	{ .label = "folded Content-Type with quoted boundary",
	  .msg = "Content-Type: multipart/mixed;\n\tboundary=\"=_Part 0.1?x\"\n\n--=_Part 0.1?x\n\nx\n--=_Part 0.1?x--\n",
	  .nparts = 2, .p = { { .type = "multipart/mixed", .multipart = true, .boundary = "=_Part 0.1?x" },
	                      { .type = "text/plain", .body = "x" } } },
	{ .label = "header and parameter names are case-insensitive",
	  .msg = "CONTENT-type: Multipart/Mixed; BOUNDARY=Q\n\n--Q\ncontent-transfer-encoding: BASE64\n\nSGk=\n--Q--\n",
	  .nparts = 2, .p = { { .type = "multipart/mixed", .multipart = true, .boundary = "Q" },
	                      { .type = "text/plain", .enc = MIME_ENC_BASE64, .body = "Hi" } } },
	{ .label = "boundary given with RFC 2231 continuations",
	  .msg = "Content-Type: multipart/mixed; boundary*0=ab; boundary*1=cd\n\n--abcd\n\nx\n--abcd--\n",
	  .nparts = 2, .p = { { .type = "multipart/mixed", .multipart = true, .boundary = "abcd" },
	                      { .type = "text/plain", .body = "x" } } },
	{ .label = "first Content-Type wins",
	  .msg = "Content-Type: text/html\nContent-Type: image/png\n\nx\n", .nparts = 1,
	  .p = { { .type = "text/html" } } },
	{ .label = "invalid Content-Type falls back to text/plain",
	  .msg = "Content-Type: garbage\n\nx\n", .nparts = 1, .p = { { .type = "text/plain", .charset = "" } } },
	{ .label = "Content-Type with comments and spaces",
	  .msg = "Content-Type: (c) TEXT / HTML (c); charset = \"UTF-8\"\n\nx\n", .nparts = 1,
	  .p = { { .type = "text/html", .charset = "utf-8" } } },
	{ .label = "charset with a trailing comment (RFC 2045 example)",
	  .msg = "Content-type: text/plain; charset=us-ascii (Plain text)\n\nx\n", .nparts = 1,
	  .p = { { .type = "text/plain", .charset = "us-ascii" } } },
	{ .label = "unknown transfer encoding",
	  .msg = "Content-Transfer-Encoding: x-uuencode\n\nbegin 644 a\n", .nparts = 1, .flags = MIME_BAD_ENCODING,
	  .p = { { .type = "text/plain", .enc = MIME_ENC_UNKNOWN, .flags = MIME_BAD_ENCODING, .body = "begin 644 a\n" } } },
	{ .label = "8bit and binary encodings",
	  .msg = MIXED("b") "--b\nContent-Transfer-Encoding: 8bit\n\n\xc3\xa9\n--b\nContent-Transfer-Encoding: Binary\n\n\x01\n--b--\n",
	  .nparts = 3, .p = { { .type = "multipart/mixed", .multipart = true },
	                      { .type = "text/plain", .enc = MIME_ENC_8BIT, .body = "\xc3\xa9" },
	                      { .type = "text/plain", .enc = MIME_ENC_BINARY, .body = "\x01" } } },
	{ .label = "base64 with invalid characters decodes the rest",
	  .msg = "Content-Transfer-Encoding: base64\n\nSGV*sbG8#h\n", .nparts = 1, .flags = MIME_BAD_BASE64,
	  .p = { { .type = "text/plain", .enc = MIME_ENC_BASE64, .body = "Hello!", .flags = MIME_BAD_BASE64 } } },
	{ .label = "base64 without padding",
	  .msg = "Content-Transfer-Encoding: base64\n\nSGVsbG8\n", .nparts = 1, .flags = MIME_BAD_BASE64,
	  .p = { { .type = "text/plain", .enc = MIME_ENC_BASE64, .body = "Hello", .flags = MIME_BAD_BASE64 } } },
	{ .label = "base64 with padding in the middle",
	  .msg = "Content-Transfer-Encoding: base64\n\nSGk=SGk=\n", .nparts = 1, .flags = MIME_BAD_BASE64,
	  .p = { { .type = "text/plain", .enc = MIME_ENC_BASE64, .body = "HiHi", .flags = MIME_BAD_BASE64 } } },
	{ .label = "base64 with a stray '='",
	  .msg = "Content-Transfer-Encoding: base64\n\nS=Gk=\n", .nparts = 1, .flags = MIME_BAD_BASE64,
	  .p = { { .type = "text/plain", .enc = MIME_ENC_BASE64, .body = "Hi", .flags = MIME_BAD_BASE64 } } },
	{ .label = "valid base64 over CRLF lines",
	  .msg = "Content-Transfer-Encoding: base64\n\nSGVsbG8s\nIHdvcmxk\nIQo=\n\n", .nparts = 1,
	  .p = { { .type = "text/plain", .enc = MIME_ENC_BASE64, .body = "Hello, world!\x0a", .body_len = 14 } } },
	{ .label = "quoted-printable soft breaks and trailing space",
	  .msg = "Content-Transfer-Encoding: quoted-printable\n\nabc=\ndef  \nx=3Dy=  \nz\n", .nparts = 1,
	  .p = { { .type = "text/plain", .enc = MIME_ENC_QP, .body = "abcdef\nx=yz\n" } } },
	{ .label = "quoted-printable bad escapes kept literally",
	  .msg = "Content-Transfer-Encoding: quoted-printable\n\na=ZZb=4\nc=e9\n", .nparts = 1, .flags = MIME_BAD_QP,
	  .p = { { .type = "text/plain", .enc = MIME_ENC_QP, .body = "a=ZZb=4\nc\xe9\n", .flags = MIME_BAD_QP } } },
	{ .label = "RFC 2231 filename in UTF-8",
	  .msg = "Content-Type: application/pdf\nContent-Disposition: attachment; filename*=utf-8''%E2%82%AC.pdf\n\nx\n",
	  .nparts = 1, .p = { { .type = "application/pdf", .disposition = "attachment", .filename = "\xe2\x82\xac.pdf" } } },
	{ .label = "RFC 2231 continuations, a character split across them",
	  .msg = "Content-Disposition: attachment;\n filename*0*=UTF-8'en'%E2%82;\n filename*1*=%AC;\n filename*2=\".pdf\"\n\nx\n",
	  .nparts = 1, .p = { { .type = "text/plain", .filename = "\xe2\x82\xac.pdf" } } },
	{ .label = "RFC 2231 plain continuations out of order",
	  .msg = "Content-Disposition: attachment; filename*1=\"name.txt\"; filename*0=\"long-\"\n\nx\n",
	  .nparts = 1, .p = { { .type = "text/plain", .filename = "long-name.txt" } } },
	{ .label = "RFC 2231 in ISO-8859-1 with language",
	  .msg = "Content-Disposition: inline; filename*=iso-8859-1'fr'caf%E9.txt\n\nx\n",
	  .nparts = 1, .p = { { .type = "text/plain", .disposition = "inline", .filename = "caf\xc3\xa9.txt" } } },
	{ .label = "RFC 2231 form wins over plain filename",
	  .msg = "Content-Disposition: attachment; filename=\"old.txt\"; filename*=utf-8''new.txt\n\nx\n",
	  .nparts = 1, .p = { { .type = "text/plain", .filename = "new.txt" } } },
	{ .label = "RFC 2047 base64 word in filename",
	  .msg = "Content-Disposition: attachment; filename=\"=?UTF-8?B?4oKsLnBkZg==?=\"\n\nx\n",
	  .nparts = 1, .p = { { .type = "text/plain", .filename = "\xe2\x82\xac.pdf" } } },
	{ .label = "RFC 2047 Q word in ISO-8859-1 in name",
	  .msg = "Content-Type: text/plain; name=\"=?iso-8859-1?Q?caf=E9_au_lait.txt?=\"\n\nx\n",
	  .nparts = 1, .p = { { .type = "text/plain", .filename = "caf\xc3\xa9 au lait.txt" } } },
	{ .label = "filename from Content-Type name",
	  .msg = "Content-Type: application/pdf; name=\"report.pdf\"\n\nx\n",
	  .nparts = 1, .p = { { .type = "application/pdf", .filename = "report.pdf", .disposition = "" } } },
	{ .label = "empty filename falls back to name",
	  .msg = "Content-Type: application/pdf; name=n.pdf\nContent-Disposition: attachment; filename=\"\"\n\nx\n",
	  .nparts = 1, .p = { { .type = "application/pdf", .filename = "n.pdf" } } },
	{ .label = "duplicate filename: the first wins",
	  .msg = "Content-Disposition: attachment; filename=a.txt; filename=b.exe\n\nx\n",
	  .nparts = 1, .p = { { .type = "text/plain", .filename = "a.txt" } } },
	{ .label = "Windows path in a quoted filename keeps backslashes",
	  .msg = "Content-Disposition: attachment; filename=\"C:\\dir\\a.txt\"\n\nx\n",
	  .nparts = 1, .p = { { .type = "text/plain", .filename = "C:\\dir\\a.txt" } } },
	{ .label = "raw 8-bit filename becomes valid UTF-8",
	  .msg = "Content-Disposition: attachment; filename=\"caf\xe9.txt\"\n\nx\n",
	  .nparts = 1, .p = { { .type = "text/plain", .filename = "caf\xef\xbf\xbd.txt" } } },
	{ .label = "unquoted filename with spaces",
	  .msg = "Content-Disposition: attachment; filename=my file.pdf ; size=3\n\nx\n",
	  .nparts = 1, .p = { { .type = "text/plain", .filename = "my file.pdf" } } },
	{ .label = "unknown disposition kept lower-case",
	  .msg = "Content-Disposition: Form-Data; name=x\n\nx\n",
	  .nparts = 1, .p = { { .type = "text/plain", .disposition = "form-data", .filename = "" } } },
	{ .label = "depth limit",
	  .build = build_deep, .nparts = 21, .flags = MIME_TOO_DEEP },
	{ .label = "parts limit",
	  .build = build_many, .nparts = MIME_MAX_PARTS, .flags = MIME_TOO_MANY,
	  .p = { { .type = "multipart/mixed", .multipart = true, .flags = MIME_TOO_MANY },
	         { .type = "text/plain", .body = "part 0" } } },
	{ .label = "long filename cut on a character boundary",
	  .build = build_long_name, .nparts = 1,
	  .p = { { .type = "application/octet-stream", .disposition = "attachment" } } },
	{ .label = "bare-LF multipart message", .lf = true,
	  .msg = MIXED("b") "--b\nContent-Type: text/plain\n\nline 1\nline 2\n--b\n"
	         "Content-Transfer-Encoding: quoted-printable\n\nsoft=\nbreak\n--b--\n",
	  .nparts = 3, .p = { { .type = "multipart/mixed", .multipart = true },
	                      { .type = "text/plain", .body = "line 1\nline 2" },
	                      { .type = "text/plain", .enc = MIME_ENC_QP, .body = "softbreak" } } },
	{ .label = "mixed CRLF and bare LF", .lf = true,
	  .msg = "Content-Type: multipart/mixed; boundary=b\r\n\n--b\r\n\r\nx\n--b\n\ny\r\n--b--\r\n",
	  .nparts = 3, .p = { { .type = "multipart/mixed", .multipart = true },
	                      { .type = "text/plain", .body = "x" },
	                      { .type = "text/plain", .body = "y" } } },
	{ .label = "no final line end",
	  .msg = MIXED("b") "--b\n\nlast\n--b--", .nparts = 2,
	  .p = { { .type = "multipart/mixed", .multipart = true }, { .type = "text/plain", .body = "last" } } },
	{ .label = "multipart body is the raw body",
	  .msg = "Content-Type: multipart/mixed; boundary=b\nContent-Transfer-Encoding: base64\n\n--b\n\nx\n--b--\n",
	  .nparts = 2, .p = { { .type = "multipart/mixed", .multipart = true, .enc = MIME_ENC_BASE64,
	                        .body = "--b\n\nx\n--b--\n" },
	                      { .type = "text/plain", .body = "x" } } },
	{ .label = "line of dashes only",
	  .msg = MIXED("--") "-----\n----\n\nx\n-----\n------\n----\n", .nparts = 2,
	  .p = { { .type = "multipart/mixed", .multipart = true, .boundary = "--" },
	         { .type = "text/plain", .body = "x\n-----" } } },
};

static void check_msg_case(const struct msg_case *c)
{
	struct buf in = {0}, body = {0}, want = {0};
	struct mime_message m;
	char why[1024] = "";
	if (c->build)
		c->build(&in);
	else
		crlf(c->msg, c->lf, &in);
	/* an exact-size copy, so ASan sees any read past the end */
	char *msg = xmalloc(in.len ? in.len : 1);
	memcpy(msg, in.data, in.len);
	mime_parse(msg, in.len, &m);
	const char *inv = invariants(msg, in.len, &m);
	if (inv)
		snprintf(why, sizeof why, "invariant: %s", inv);
	else if (m.nparts != c->nparts)
		snprintf(why, sizeof why, "nparts %d, want %d", m.nparts, c->nparts);
	else if (m.flags != c->flags)
		snprintf(why, sizeof why, "flags 0x%x, want 0x%x", m.flags, c->flags);
	for (int i = 0; !why[0] && i < 8 && c->p[i].type; i++) {
		const struct want_part *w = &c->p[i];
		const struct mime_part *p = &m.parts[i];
		unsigned dflags = 0;
		buf_reset(&body);
		buf_reset(&want);
		mime_decode_body(p, &body, &dflags);
		if (w->body && w->body_len)
			buf_add(&want, w->body, w->body_len);
		else if (w->body)
			crlf(w->body, c->lf, &want);
		if (differs(why, sizeof why, i, "type", p->content_type, w->type) ||
		    differs(why, sizeof why, i, "charset", p->charset, w->charset) ||
		    differs(why, sizeof why, i, "filename", p->filename, w->filename) ||
		    differs(why, sizeof why, i, "disposition", p->disposition, w->disposition) ||
		    differs(why, sizeof why, i, "boundary", p->boundary, w->boundary))
			;
		else if (i > 0 && p->parent != w->parent)
			snprintf(why, sizeof why, "part %d parent %d, want %d", i, p->parent, w->parent);
		else if (p->multipart != w->multipart)
			snprintf(why, sizeof why, "part %d multipart %d", i, p->multipart);
		else if (p->encoding != w->enc)
			snprintf(why, sizeof why, "part %d encoding %d, want %d", i, p->encoding, w->enc);
		else if (p->flags != w->flags)
			snprintf(why, sizeof why, "part %d flags 0x%x, want 0x%x", i, p->flags, w->flags);
		else if ((dflags | p->flags) != p->flags)
			snprintf(why, sizeof why, "part %d decoding flags 0x%x not in the part's", i, dflags);
		else if (w->body && (body.len != want.len || memcmp(bstr_or(&body), bstr_or(&want), want.len)))
			snprintf(why, sizeof why, "part %d body '%.*s' (%zu), want %zu octets", i,
			         (int)body.len, bstr_or(&body), body.len, want.len);
	}
	tap_ok(!why[0], "message: %s", c->label);
	if (why[0])
		tap_diag("%s", why);
	mime_message_free(&m);
	free(msg);
	buf_free(&in);
	buf_free(&body);
	buf_free(&want);
}

/* ---- body decoding ------------------------------------------------- */

static const struct {
	const char *label;
	enum mime_encoding enc;
	const char *in, *out;           /* octets as they are, no CRLF rewriting */
	size_t out_len;                 /* 0: strlen(out) */
	unsigned flags;
} body_cases[] = {
	{ .label = "base64 empty", .enc = MIME_ENC_BASE64, .in = "", .out = "" },
	{ .label = "base64 full groups", .enc = MIME_ENC_BASE64, .in = "SGVsbG8h", .out = "Hello!" },
	{ .label = "base64 one pad", .enc = MIME_ENC_BASE64, .in = "SGVsbG8=", .out = "Hello" },
	{ .label = "base64 two pads", .enc = MIME_ENC_BASE64, .in = "SGVsbA==", .out = "Hell" },
	{ .label = "base64 whitespace anywhere", .enc = MIME_ENC_BASE64, .in = " S G\tV s\r\nb A = =\r\n", .out = "Hell" },
	{ .label = "base64 dangling sextet", .enc = MIME_ENC_BASE64, .in = "SGVsb", .out = "Hel", .flags = MIME_BAD_BASE64 },
	{ .label = "base64 padding only", .enc = MIME_ENC_BASE64, .in = "====", .out = "", .flags = MIME_BAD_BASE64 },
	{ .label = "base64 one pad where two are due", .enc = MIME_ENC_BASE64, .in = "SGVsbA=", .out = "Hell", .flags = MIME_BAD_BASE64 },
	{ .label = "base64 URL alphabet is invalid", .enc = MIME_ENC_BASE64, .in = "SGk-_w==", .out = "Hi0", .flags = MIME_BAD_BASE64 },
	{ .label = "base64 binary octets", .enc = MIME_ENC_BASE64, .in = "AAEC//5QREY=", .out = "\x00\x01\x02\xff\xfePDF", .out_len = 8 },
	{ .label = "qp plain text", .enc = MIME_ENC_QP, .in = "abc", .out = "abc" },
	{ .label = "qp hard line ends kept", .enc = MIME_ENC_QP, .in = "a\r\nb\r\n", .out = "a\r\nb\r\n" },
	{ .label = "qp soft line break", .enc = MIME_ENC_QP, .in = "a=\r\nb", .out = "ab" },
	{ .label = "qp soft break with padding after '='", .enc = MIME_ENC_QP, .in = "a= \t\r\nb", .out = "ab" },
	{ .label = "qp '=' at the very end", .enc = MIME_ENC_QP, .in = "a=", .out = "a" },
	{ .label = "qp escape cut short", .enc = MIME_ENC_QP, .in = "a=4", .out = "a=4", .flags = MIME_BAD_QP },
	{ .label = "qp invalid hex", .enc = MIME_ENC_QP, .in = "=G0=0G", .out = "=G0=0G", .flags = MIME_BAD_QP },
	{ .label = "qp lower-case hex accepted", .enc = MIME_ENC_QP, .in = "=c3=a9", .out = "\xc3\xa9" },
	{ .label = "qp =00 gives a NUL", .enc = MIME_ENC_QP, .in = "a=00b", .out = "a\0b", .out_len = 3 },
	{ .label = "qp bare LF", .enc = MIME_ENC_QP, .in = "a=\nb\nc", .out = "ab\nc" },
	{ .label = "qp trailing whitespace dropped", .enc = MIME_ENC_QP, .in = "a \t\r\nb ", .out = "a\r\nb" },
	{ .label = "qp encoded space at line end kept", .enc = MIME_ENC_QP, .in = "a=20\r\n", .out = "a \r\n" },
	{ .label = "7bit copied as is", .enc = MIME_ENC_7BIT, .in = "x=41 \r\n", .out = "x=41 \r\n" },
	{ .label = "unknown encoding copied as is", .enc = MIME_ENC_UNKNOWN, .in = "SGk=", .out = "SGk=" },
};

static void check_body_case(size_t i)
{
	size_t n = strlen(body_cases[i].in), wl = body_cases[i].out_len ? body_cases[i].out_len : strlen(body_cases[i].out);
	char *copy = xmalloc(n ? n : 1);
	memcpy(copy, body_cases[i].in, n);
	struct mime_part p = { .encoding = body_cases[i].enc, .body = copy, .body_len = n };
	struct buf out = {0};
	unsigned flags = 0;
	mime_decode_body(&p, &out, &flags);
	int pass = out.len == wl && !memcmp(bstr_or(&out), body_cases[i].out, wl) && flags == body_cases[i].flags;
	tap_ok(pass, "body: %s", body_cases[i].label);
	if (!pass)
		tap_diag("got '%.*s' (%zu octets) flags 0x%x", (int)out.len, bstr_or(&out), out.len, flags);
	buf_free(&out);
	free(copy);
}

/* ---- RFC 2047 ------------------------------------------------------ */

static const struct {
	const char *label, *in, *out;
} word_cases[] = {
	{ .label = "plain text untouched", .in = "Hello world", .out = "Hello world" },
	{ .label = "UTF-8 B word", .in = "=?UTF-8?B?4oKsLnBkZg==?=", .out = "\xe2\x82\xac.pdf" },
	{ .label = "ISO-8859-1 Q word", .in = "=?iso-8859-1?Q?caf=E9?=", .out = "caf\xc3\xa9" },
	{ .label = "Subject with text around a word", .in = "Re: =?utf-8?q?caf=C3=A9?= now", .out = "Re: caf\xc3\xa9 now" },
	{ .label = "space between adjacent words dropped", .in = "=?utf-8?q?a?= \t =?utf-8?q?b?=", .out = "ab" },
	{ .label = "folding between words dropped", .in = "=?utf-8?q?a?=\r\n =?utf-8?q?b?=", .out = "ab" },
	{ .label = "text between words kept", .in = "=?utf-8?q?a?= b =?utf-8?q?c?=", .out = "a b c" },
	{ .label = "underscore is a space in Q", .in = "=?us-ascii?q?a_b?=", .out = "a b" },
	{ .label = "character split across two B words", .in = "=?UTF-8?B?4g==?= =?UTF-8?B?gqw=?=", .out = "\xe2\x82\xac" },
	{ .label = "adjacent words in different charsets", .in = "=?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?=", .out = "\xc3\xa9\xc3\xa9" },
	{ .label = "words with nothing between them", .in = "=?utf-8?q?a?==?utf-8?q?b?=", .out = "ab" },
	{ .label = "windows-1252 euro", .in = "=?windows-1252?Q?=80_5?=", .out = "\xe2\x82\xac 5" },
	{ .label = "KOI8-R through iconv", .in = "=?koi8-r?B?8NLJ18XU?=", .out = "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82" },
	{ .label = "lower-case encoding letter", .in = "=?utf-8?b?SGk=?=", .out = "Hi" },
	{ .label = "RFC 2231 language in a word", .in = "=?utf-8*en?q?x?=", .out = "x" },
	{ .label = "empty encoded text", .in = "a =?utf-8?q?\?= b", .out = "a  b" },
	{ .label = "invalid UTF-8 becomes U+FFFD", .in = "=?utf-8?q?=FF?=", .out = "\xef\xbf\xbd" },
	{ .label = "unknown charset left as is", .in = "=?x-no-such-cs?q?abc?=", .out = "=?x-no-such-cs?q?abc?=" },
	{ .label = "invalid base64 left as is", .in = "=?utf-8?B?@@@@?=", .out = "=?utf-8?B?@@@@?=" },
	{ .label = "unterminated word left as is", .in = "=?utf-8?Q?abc", .out = "=?utf-8?Q?abc" },
	{ .label = "space inside a word breaks it", .in = "=?utf-8?Q?a b?=", .out = "=?utf-8?Q?a b?=" },
	{ .label = "unknown encoding letter left as is", .in = "=?utf-8?X?abc?=", .out = "=?utf-8?X?abc?=" },
	{ .label = "stray =? before a real word", .in = "=?=?utf-8?q?ok?=", .out = "=?ok" },
	{ .label = "unknown charset word joined with a known one", .in = "=?x-bad?q?a?= =?utf-8?q?b?=", .out = "=?x-bad?q?a?=b" },
};

static void check_word_case(size_t i)
{
	size_t n = strlen(word_cases[i].in);
	char *copy = xmalloc(n ? n : 1);
	memcpy(copy, word_cases[i].in, n);
	struct buf out = {0};
	mime_decode_words(copy, n, &out);
	char *label = xasprintf("words: %s", word_cases[i].label);
	TAP_STREQ(bstr_or(&out), word_cases[i].out, label);
	free(label);
	buf_free(&out);
	free(copy);
}

/* ---- parameters ---------------------------------------------------- */

static const struct {
	const char *label, *value, *name;
	const char *out;                /* NULL: not found */
} param_cases[] = {
	{ .label = "token value", .value = "text/plain; charset=utf-8", .name = "charset", .out = "utf-8" },
	{ .label = "quoted value with escapes", .value = "attachment; filename=\"a \\\"b\\\" c.txt\"", .name = "filename", .out = "a \"b\" c.txt" },
	{ .label = "name is case-insensitive", .value = "text/plain; CharSet=\"X\"", .name = "charset", .out = "X" },
	{ .label = "absent parameter", .value = "text/plain; format=flowed", .name = "charset", .out = NULL },
	{ .label = "no parameters at all", .value = "text/plain", .name = "charset", .out = NULL },
	{ .label = "longer name does not match", .value = "text/plain; xcharset=a; charsetx=b", .name = "charset", .out = NULL },
	{ .label = "semicolon inside quotes", .value = "x/y; a=\"; charset=bad\"; charset=good", .name = "charset", .out = "good" },
	{ .label = "whitespace around '='", .value = "x/y; charset = \"utf-8\" ", .name = "charset", .out = "utf-8" },
	{ .label = "comment after the value", .value = "x/y; charset=us-ascii (Plain text)", .name = "charset", .out = "us-ascii" },
	{ .label = "parentheses inside a token kept", .value = "x/y; name=file(1).pdf", .name = "name", .out = "file(1).pdf" },
	{ .label = "empty quoted value", .value = "x/y; name=\"\"", .name = "name", .out = "" },
	{ .label = "missing value", .value = "x/y; name=", .name = "name", .out = "" },
	{ .label = "parameter without '=' skipped", .value = "x/y; name; charset=k", .name = "charset", .out = "k" },
	{ .label = "unterminated quoted string", .value = "x/y; name=\"abc", .name = "name", .out = "abc" },
	{ .label = "first duplicate wins", .value = "x/y; name=a; name=b", .name = "name", .out = "a" },
	{ .label = "RFC 2231 UTF-8", .value = "a; filename*=utf-8''%E2%82%AC.pdf", .name = "filename", .out = "\xe2\x82\xac.pdf" },
	{ .label = "RFC 2231 without charset", .value = "a; filename*=''%41b", .name = "filename", .out = "Ab" },
	{ .label = "RFC 2231 without quotes at all", .value = "a; filename*=%41b", .name = "filename", .out = "Ab" },
	{ .label = "RFC 2231 invalid escapes kept", .value = "a; filename*=utf-8''%G1%4", .name = "filename", .out = "%G1%4" },
	{ .label = "RFC 2231 quoted (lenient)", .value = "a; filename*=\"utf-8''%41\"", .name = "filename", .out = "A" },
	{ .label = "RFC 2231 continuations mixed", .value = "a; f*0*=us-ascii'en'This%20is; f*1=\" even\"; f*2*=%20more",
	  .name = "f", .out = "This is even more" },
	{ .label = "RFC 2231 continuation gap stops", .value = "a; f*0=one; f*2=three", .name = "f", .out = "one" },
	{ .label = "RFC 2231 index too large ignored", .value = "a; f*0=one; f*999999999999999999999=x", .name = "f", .out = "one" },
	{ .label = "RFC 2231 unknown charset keeps octets", .value = "a; f*=x-nope''%41%42", .name = "f", .out = "AB" },
	{ .label = "RFC 2231 continuations win over the plain form", .value = "a; f=plain; f*0=co; f*1=nt", .name = "f", .out = "cont" },
	{ .label = "RFC 2231 in windows-1252", .value = "a; f*=windows-1252''%93q%94", .name = "f", .out = "\xe2\x80\x9cq\xe2\x80\x9d" },
	{ .label = "folded parameter list", .value = "multipart/mixed;\r\n\tboundary=\"----=_NextPart_000\"", .name = "boundary",
	  .out = "----=_NextPart_000" },
};

static void check_param_case(size_t i)
{
	struct buf out = {0};
	int found = mime_param(param_cases[i].value, param_cases[i].name, &out);
	char *label = xasprintf("param: %s", param_cases[i].label);
	if (!param_cases[i].out) {
		tap_ok(!found, "%s", label);
	} else if (!found) {
		tap_ok(0, "%s", label);
		tap_diag("not found");
	} else {
		TAP_STREQ(bstr_or(&out), param_cases[i].out, label);
	}
	free(label);
	buf_free(&out);
}

/* ---- header fields ------------------------------------------------- */

static const struct {
	const char *label, *head;       /* head: "\n" becomes "\r\n" */
	const char *want;               /* "name=value|" per field */
	unsigned flags;
} hdr_cases[] = {
	{ .label = "simple fields", .head = "From: a\nTo: b\n", .want = "From=a|To=b|" },
	{ .label = "folded value unfolded", .head = "Subject: one\n two\n\tthree\n", .want = "Subject=one two\tthree|" },
	{ .label = "surrounding whitespace trimmed", .head = "X:   v  \t\n", .want = "X=v|" },
	{ .label = "empty value", .head = "X:\nY: \n", .want = "X=|Y=|" },
	{ .label = "space before the colon (obsolete syntax)", .head = "Subject : x\n", .want = "Subject=x|" },
	{ .label = "line without colon skipped", .head = "A: 1\nnocolon\nB: 2\n", .want = "A=1|B=2|", .flags = MIME_BAD_HEADER },
	{ .label = "name with a space is invalid", .head = "Bad Name: 1\nC: 3\n", .want = "C=3|", .flags = MIME_BAD_HEADER },
	{ .label = "empty name is invalid", .head = ": x\n", .want = "", .flags = MIME_BAD_HEADER },
	{ .label = "stray continuation first", .head = " lost: x\nA: 1\n", .want = "A=1|", .flags = MIME_BAD_HEADER },
	{ .label = "empty line ends the block", .head = "A: 1\n\nB: 2\n", .want = "A=1|" },
	{ .label = "no final line end", .head = "A: 1\nB: 2", .want = "A=1|B=2|" },
	{ .label = "colon inside the value", .head = "Date: Mon, 1 Jan 2024 10:00:00\n", .want = "Date=Mon, 1 Jan 2024 10:00:00|" },
	{ .label = "folded line with only whitespace", .head = "A: x\n \nB: y\n", .want = "A=x|B=y|" },
};

static void check_hdr_case(size_t i)
{
	struct buf head = {0}, got = {0};
	crlf(hdr_cases[i].head, false, &head);
	char *copy = xmalloc(head.len ? head.len : 1);
	memcpy(copy, head.data, head.len);
	struct mime_hdr_iter it;
	mime_hdr_begin(&it, copy, head.len);
	while (mime_hdr_next(&it))
		buf_addf(&got, "%s=%s|", it.name.data, it.value.data);
	mime_hdr_end(&it);
	int pass = !strcmp(bstr_or(&got), hdr_cases[i].want) && it.flags == hdr_cases[i].flags;
	tap_ok(pass, "header: %s", hdr_cases[i].label);
	if (!pass)
		tap_diag("got '%s' flags 0x%x", bstr_or(&got), it.flags);
	free(copy);
	buf_free(&head);
	buf_free(&got);
}

/* ---- adversarial inputs -------------------------------------------- */

static void adv_nested_same(struct buf *b)
{
	for (int i = 0; i < 10000; i++)
		buf_adds(b, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n");
	for (int i = 0; i < 10000; i++)
		buf_adds(b, "--b--\r\n");
}

static void adv_nested_diff(struct buf *b)
{
	for (int i = 0; i < 10000; i++)
		buf_addf(b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i);
	for (int i = 9999; i >= 0; i--)
		buf_addf(b, "--b%d--\r\n", i);
}

static void adv_unwinding(struct buf *b)
{
	for (int i = 0; i < 20; i++)
		buf_addf(b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i);
	for (int i = 0; i < 100000; i++)
		buf_addf(b, "--b%d\r\n--b%dx\r\n", i % 20, i % 20);
}

static void adv_long_line(struct buf *b)
{
	buf_adds(b, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b");
	for (int i = 0; i < 1 << 22; i++)
		buf_add(b, " ", 1);
	buf_adds(b, "x\r\n");
	for (int i = 0; i < 1 << 22; i++)
		buf_add(b, "a", 1);
}

static void adv_dashes(struct buf *b)
{
	buf_adds(b, "Content-Type: multipart/mixed; boundary=\"--\"\r\n\r\n");
	for (int i = 0; i < 1 << 22; i++)
		buf_add(b, "-", 1);
	for (int i = 0; i < 1 << 20; i++)
		buf_add(b, i & 1 ? "\n" : "-----", i & 1 ? 1 : 5);
}

static void adv_only_dashes(struct buf *b)
{
	for (int i = 0; i < 1 << 22; i++)
		buf_add(b, i % 1000 ? "-" : "\n", 1);
}

static void adv_words(struct buf *b)
{
	buf_adds(b, "Subject: ");
	for (int i = 0; i < 300000; i++)
		buf_adds(b, i % 3 ? "=?" : "=?a?q?");
	buf_adds(b, "\r\nContent-Disposition: attachment; filename=\"");
	for (int i = 0; i < 100000; i++)
		buf_adds(b, "=?utf-8?q?x?= ");
	buf_adds(b, "\"\r\n\r\n");
}

static void adv_params(struct buf *b)
{
	buf_adds(b, "Content-Type: text/plain");
	for (int i = 0; i < 200000; i++)
		buf_addf(b, "; name*%d*=%%41", i % 300);
	buf_adds(b, "\r\nContent-Disposition: a; filename=\"");
	for (int i = 0; i < 1 << 20; i++)
		buf_add(b, "\\", 1);
	buf_adds(b, "\r\n\r\n");
}

static void adv_folded(struct buf *b)
{
	buf_adds(b, "Content-Type: multipart/mixed;");
	for (int i = 0; i < 1 << 20; i++)
		buf_adds(b, "\r\n ((((");
	buf_adds(b, "\r\n\r\n");
}

static void adv_bodies(struct buf *b)
{
	buf_adds(b, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
	for (int i = 0; i < 1 << 21; i++)
		buf_add(b, i % 997 ? "=" : "\n", 1);
	buf_adds(b, "\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	for (int i = 0; i < 1 << 21; i++)
		buf_add(b, i % 2 ? "=" : "*", 1);
	buf_adds(b, "\r\n--b--\r\n");
}

static void adv_empty_lines(struct buf *b)
{
	buf_adds(b, "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
	for (int i = 0; i < 1 << 20; i++)
		buf_adds(b, i % 2 ? "\n" : "--b\r\n");
}

static const struct {
	const char *label;
	void (*build)(struct buf *);
} adv_cases[] = {
	{ .label = "10,000 nested multiparts, one boundary", .build = adv_nested_same },
	{ .label = "10,000 nested multiparts, distinct boundaries", .build = adv_nested_diff },
	{ .label = "boundary lines at every depth", .build = adv_unwinding },
	{ .label = "megabyte lines", .build = adv_long_line },
	{ .label = "dashes under a dash boundary", .build = adv_dashes },
	{ .label = "a message of only dashes", .build = adv_only_dashes },
	{ .label = "a header full of '=?'", .build = adv_words },
	{ .label = "200,000 parameters, a megabyte of backslashes", .build = adv_params },
	{ .label = "a million folded lines of comment openers", .build = adv_folded },
	{ .label = "bodies of bad escapes", .build = adv_bodies },
	{ .label = "a million empty parts", .build = adv_empty_lines },
};

/* Everything a filter might do with a parsed message. */
static void exercise(const struct mime_message *m)
{
	struct buf out = {0};
	for (int i = 0; i < m->nparts; i++) {
		const struct mime_part *p = &m->parts[i];
		unsigned flags = 0;
		buf_reset(&out);
		mime_decode_body(p, &out, &flags);
		struct mime_hdr_iter it;
		mime_hdr_begin(&it, p->head, p->head_len);
		while (mime_hdr_next(&it)) {
			char *v = xmalloc(it.value.len ? it.value.len : 1);
			memcpy(v, it.value.data, it.value.len);
			buf_reset(&out);
			mime_decode_words(v, it.value.len, &out);
			free(v);
			buf_reset(&out);
			mime_param(it.value.data, "filename", &out);
		}
		mime_hdr_end(&it);
	}
	buf_free(&out);
}

static void check_adv_case(size_t i)
{
	struct buf in = {0};
	struct mime_message m;
	adv_cases[i].build(&in);
	size_t len = in.len;
	char *msg = xmalloc(len);
	memcpy(msg, in.data, len);
	buf_free(&in);
	clock_t t0 = clock();
	mime_parse(msg, len, &m);
	exercise(&m);
	double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
	const char *inv = invariants(msg, len, &m);
	/* linear work is well under a second even under ASan; quadratic is hours */
	tap_ok(secs < 10 && !inv, "adversarial: %s (%.2fs, %d parts)", adv_cases[i].label, secs, m.nparts);
	if (inv)
		tap_diag("invariant: %s", inv);
	mime_message_free(&m);
	free(msg);
}

/* ---- robustness: deterministic mutations --------------------------- */

#define FUZZ_RUNS 200000
#define FUZZ_MAX  16384

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? (uint32_t)(rng % n) : 0;
}

static const char *const dict[] = {
	"--", "--b", "--b--", "--b1", "--outer", "--inner--", "\r\n", "\n", "\r\n\r\n", "\r", " ", "\t",
	"=?utf-8?b?", "=?iso-8859-1?q?=E9", "?=", "=?", "=", "==", "=\r\n", "=E2=82", "%", "%E2%82%AC",
	"\"", "\\", ";", ":", "(", ")", "'", "*", "*0*=", "*1=", "filename*=utf-8''", "name=",
	"boundary=b", "Content-Type: multipart/mixed; boundary=b\r\n\r\n",
	"Content-Transfer-Encoding: base64\r\n", "Content-Transfer-Encoding: quoted-printable\r\n",
	"Content-Disposition: attachment; filename*0*=utf-8''%E2; filename*1*=%82%AC\r\n",
	"\xff", "\xe2\x82", "\0",
};

static void mutate(struct buf *b)
{
	int ops = 1 + (int)rnd(8);
	while (ops--) {
		size_t at = b->len ? rnd((uint32_t)b->len + 1) : 0;
		switch (rnd(6)) {
		case 0:                 /* overwrite an octet */
			if (b->len)
				b->data[rnd((uint32_t)b->len)] = (char)rnd(256);
			break;
		case 1:
		case 2: {               /* insert a dictionary token */
			const char *t = dict[rnd(sizeof dict / sizeof dict[0])];
			size_t n = t[0] ? strlen(t) : 1;
			buf_reserve(b, n);
			memmove(b->data + at + n, b->data + at, b->len - at);
			memcpy(b->data + at, t, n);
			b->len += n;
			break;
		}
		case 3: {               /* delete a range */
			size_t n = rnd(64);
			if (n > b->len - at)
				n = b->len - at;
			memmove(b->data + at, b->data + at + n, b->len - at - n);
			b->len -= n;
			break;
		}
		case 4: {               /* repeat a range */
			size_t n = rnd(256);
			if (n > b->len - at)
				n = b->len - at;
			int times = 1 + (int)rnd(4);
			while (times-- && b->len + n < FUZZ_MAX) {
				buf_reserve(b, n);
				memmove(b->data + at + n, b->data + at, b->len - at);
				b->len += n;
			}
			break;
		}
		case 5:                 /* truncate */
			b->len = at;
			break;
		}
	}
}

static void check_fuzz(void)
{
	size_t nseeds = sizeof msg_cases / sizeof msg_cases[0];
	struct buf seeds[sizeof msg_cases / sizeof msg_cases[0]] = {{0}}, b = {0};
	const char *fail = NULL;
	long runs = 0;
	for (size_t i = 0; i < nseeds; i++) {
		if (msg_cases[i].build)
			msg_cases[i].build(&seeds[i]);
		else
			crlf(msg_cases[i].msg, msg_cases[i].lf, &seeds[i]);
	}
	for (; runs < FUZZ_RUNS && !fail; runs++) {
		buf_reset(&b);
		if (rnd(20) == 0) {     /* random octets from the MIME alphabet */
			static const char abc[] = "-\r\n=?bBqQ:;\"'%*() AZ09/\\\t\xe2";
			for (size_t n = rnd(512); n--; )
				buf_add(&b, &abc[rnd(sizeof abc - 1)], 1);
		} else {
			const struct buf *s = &seeds[rnd((uint32_t)nseeds)];
			size_t n = s->len < FUZZ_MAX ? s->len : FUZZ_MAX;
			buf_add(&b, s->data, n);
			mutate(&b);
		}
		char *msg = xmalloc(b.len ? b.len : 1);
		memcpy(msg, bstr_or(&b), b.len);
		struct mime_message m;
		mime_parse(msg, b.len, &m);
		fail = invariants(msg, b.len, &m);
		exercise(&m);
		mime_message_free(&m);
		free(msg);
	}
	tap_ok(!fail, "robustness: %ld mutated inputs parsed, invariants hold", runs);
	if (fail) {
		tap_diag("invariant: %s; input (%zu octets):", fail, b.len);
		tap_diag("%.*s", (int)(b.len < 2000 ? b.len : 2000), bstr_or(&b));
	}
	for (size_t i = 0; i < nseeds; i++)
		buf_free(&seeds[i]);
	buf_free(&b);
}

/* ---- checks that do not fit a table -------------------------------- */

static void check_extras(void)
{
	struct buf in = {0}, out = {0};
	struct mime_message m;

	build_deep(&in);
	mime_parse(in.data, in.len, &m);
	const struct mime_part *d = &m.parts[m.nparts - 1];
	tap_ok(d->depth == MIME_MAX_DEPTH && !d->multipart && d->flags == MIME_TOO_DEEP &&
	       !strcmp(d->content_type, "multipart/mixed") && !strcmp(d->boundary, "d20"),
	       "extra: the multipart at depth %d is a leaf flagged too deep", MIME_MAX_DEPTH);
	mime_message_free(&m);
	tap_ok(m.parts == NULL && m.nparts == 0 && m.flags == 0, "extra: mime_message_free clears the message");
	buf_reset(&in);

	build_long_name(&in);
	mime_parse(in.data, in.len, &m);
	size_t fl = strlen(m.parts[0].filename);
	tap_ok(fl == 253 && m.parts[0].filename[0] == 'a' && valid_utf8(m.parts[0].filename) &&
	       !strcmp(m.parts[0].filename + fl - 3, "\xe2\x82\xac"),
	       "extra: long filename cut to %zu octets, whole characters", fl);
	mime_message_free(&m);
	buf_reset(&in);

	crlf("Subject: =?UTF-8?B?4oKsIDEwMA==?= =?iso-8859-1?Q?_pour_le_caf=E9?=\n"
	     "Content-Type: text/plain\n\nbody\n", false, &in);
	mime_parse(in.data, in.len, &m);
	struct buf subj = {0};
	int found = mime_hdr_find(m.parts[0].head, m.parts[0].head_len, "SUBJECT", &subj);
	mime_decode_words(bstr_or(&subj), subj.len, &out);
	tap_ok(found, "extra: mime_hdr_find finds Subject case-insensitively");
	TAP_STREQ(bstr_or(&out), "\xe2\x82\xac 100 pour le caf\xc3\xa9", "extra: RFC 2047 Subject in two charsets");
	tap_ok(!mime_hdr_find(m.parts[0].head, m.parts[0].head_len, "Body", &subj), "extra: mime_hdr_find absent field");
	tap_ok(m.parts[0].head_len == strlen("Subject: =?UTF-8?B?4oKsIDEwMA==?= =?iso-8859-1?Q?_pour_le_caf=E9?=\r\n"
	                                     "Content-Type: text/plain\r\n"),
	       "extra: head ends with its last line end, without the empty line");
	buf_free(&subj);
	mime_message_free(&m);

	buf_reset(&out);
	tap_ok(!mime_param(NULL, "x", &out) && !mime_param("a; x=1", NULL, &out) && out.len == 0,
	       "extra: mime_param with NULL arguments finds nothing");
	mime_parse(NULL, 0, &m);
	tap_ok(m.nparts == 1 && m.parts[0].head_len == 0 && m.flags == MIME_BAD_HEADER, "extra: NULL message");
	mime_message_free(&m);
	buf_adds(&out, "keep:");
	mime_param("a; x=1", "x", &out);
	mime_decode_words("=?utf-8?q?2?=", 13, &out);
	TAP_STREQ(bstr_or(&out), "keep:12", "extra: decoders append to the buffer");
	buf_free(&in);
	buf_free(&out);
}

int main(void)
{
	for (size_t i = 0; i < sizeof msg_cases / sizeof msg_cases[0]; i++)
		check_msg_case(&msg_cases[i]);
	for (size_t i = 0; i < sizeof body_cases / sizeof body_cases[0]; i++)
		check_body_case(i);
	for (size_t i = 0; i < sizeof word_cases / sizeof word_cases[0]; i++)
		check_word_case(i);
	for (size_t i = 0; i < sizeof param_cases / sizeof param_cases[0]; i++)
		check_param_case(i);
	for (size_t i = 0; i < sizeof hdr_cases / sizeof hdr_cases[0]; i++)
		check_hdr_case(i);
	for (size_t i = 0; i < sizeof adv_cases / sizeof adv_cases[0]; i++)
		check_adv_case(i);
	check_extras();
	check_fuzz();
	return tap_done();
}
