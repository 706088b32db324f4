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
	  .build = build_deep, .nparts = 21, .flags = MIME_TOO_DEEP | MIME_BAD_BOUNDARY },
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
	  .msg = MIXED("--") "------\n----\n\nx\n------\n", .nparts = 2,
	  .p = { { .type = "multipart/mixed", .multipart = true, .flags = 0 },
	         { .type = "text/plain", .body = "x" } } },
};

static void check_msg_case(const struct msg_case *c)
{
	struct buf in = {0}, body = {0}, want = {0};
	struct mime_message m;
	char why[256] = "";
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
#define FIELD(f) (w->f && strcmp(p->f, w->f)) ? snprintf(why, sizeof why, "part %d " #f " '%s', want '%s'", i, p->f, w->f)
		if (strcmp(p->content_type, w->type))
			snprintf(why, sizeof why, "part %d type '%s', want '%s'", i, p->content_type, w->type);
		else if (FIELD(charset) : FIELD(filename) : FIELD(disposition) : FIELD(boundary) : 0)
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
#undef FIELD
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
