/*
 * mime.h - the MIME structure parser (RFC 2045-2049, 2047, 2231).
 *
 * The daemon parses a received message once, after the end of DATA/BDAT,
 * from a buffer holding the whole message; filters then walk the parts.
 *
 * Promises, for any input whatsoever (the message comes from the
 * internet): no crash, no read outside [msg, msg + len) (the buffer need
 * not be NUL-terminated), no loop, and time O(len * MIME_MAX_DEPTH).
 * Malformation never makes a function fail: it is reported by MIME_BAD_*
 * flags and the parser does what the common mail clients do.
 *
 * Structure rules:
 *   - Lines end in CRLF or a bare LF.  A part's header section ends at its
 *     first empty line; without one, the whole part is header, its body is
 *     empty and it gets MIME_BAD_HEADER.
 *   - A boundary line is "--" boundary ["--"] followed only by spaces,
 *     tabs or CR.  It belongs to the innermost open multipart with that
 *     boundary (one that has seen its closing line no longer matches);
 *     an outer boundary also ends the inner multiparts, which then get
 *     MIME_BAD_BOUNDARY.  The CRLF before a boundary line belongs to it.
 *   - Preamble and epilogue are not parts.
 *   - message/rfc822 (and message/global) is a leaf here: to look inside,
 *     decode its body and call mime_parse() on that.
 *   - multipart/... without a usable boundary parameter is a leaf with
 *     MIME_NO_BOUNDARY (or MIME_BAD_BOUNDARY if it is longer than 79
 *     octets); multipart at depth MIME_MAX_DEPTH is a leaf with
 *     MIME_TOO_DEEP.  content_type still says "multipart/...": test
 *     .multipart, not the type, to know whether children follow.
 *   - Leaf bodies are checked (not stored) while parsing, so a part's
 *     flags already say MIME_BAD_BASE64 / MIME_BAD_QP when they apply.
 *   - The first Content-Type, Content-Transfer-Encoding and
 *     Content-Disposition field of a part counts; later duplicates are
 *     ignored.  The same holds for duplicate parameters.
 *
 * Ownership: struct mime_message owns its parts array (mime_message_free);
 * head and body point into the caller's buffer, which must outlive them.
 * Functions that write to a struct buf append to it; they never reset it.
 */
#ifndef PETREL_MIME_H
#define PETREL_MIME_H

#include "mem.h"

#include <stdbool.h>
#include <stddef.h>

enum mime_encoding {
	MIME_ENC_7BIT, MIME_ENC_8BIT, MIME_ENC_BINARY,
	MIME_ENC_BASE64, MIME_ENC_QP, MIME_ENC_UNKNOWN,
};

/* Malformation flags, per part and OR-ed for the message. */
#define MIME_BAD_BOUNDARY   0x01  /* multipart whose closing boundary is missing, or no part found */
#define MIME_NO_BOUNDARY    0x02  /* multipart/... without a boundary parameter */
#define MIME_BAD_BASE64     0x04  /* invalid characters or bad padding in base64 */
#define MIME_BAD_QP         0x08  /* invalid =XX escape in quoted-printable */
#define MIME_TOO_DEEP       0x10  /* nesting deeper than MIME_MAX_DEPTH (then treated as a leaf) */
#define MIME_TOO_MANY       0x20  /* more than MIME_MAX_PARTS parts (the rest ignored) */
#define MIME_BAD_HEADER     0x40  /* a header line without a colon, or unterminated header section */
#define MIME_BAD_ENCODING   0x80  /* unknown Content-Transfer-Encoding */

#define MIME_MAX_DEPTH 20         /* deepest part has depth 20; a multipart there is a leaf */
#define MIME_MAX_PARTS 1000       /* parts[] never holds more, the message included */

struct mime_part {
	int index;                 /* document order, 0 = the message itself */
	int parent;                /* index of the enclosing multipart, -1 for the message */
	int depth;                 /* 0 for the message, parent's + 1 */
	bool multipart;            /* container: its children follow it in parts[] */
	const char *head;          /* raw header block: its lines with their line ends, not the
	                              empty line after them (nor, for a part cut short by a
	                              boundary, the line end that belongs to the boundary) */
	size_t head_len;
	const char *body;          /* raw (encoded) body, in the message buffer */
	size_t body_len;
	char content_type[128];    /* lower-case "type/subtype"; default text/plain,
	                              message/rfc822 inside multipart/digest */
	char charset[64];          /* lower-case charset parameter, "" if none (or longer than 63) */
	char boundary[80];         /* multipart only */
	char disposition[32];      /* lower-case disposition type as written ("attachment",
	                              "inline", ...), "" if none */
	char filename[256];        /* valid UTF-8, truncated on a character boundary; from
	                              Content-Disposition filename (RFC 2231 too) or else
	                              Content-Type name; RFC 2047 words decoded; "" if none */
	enum mime_encoding encoding;
	unsigned flags;            /* MIME_BAD_* about this part */
	int nfields;               /* header fields in head (as mime_hdr_next counts them) */
	size_t longest_field;      /* octets of its longest field, continuation lines and
	                              line ends included (for header_size_limit) */
};

struct mime_message {
	struct mime_part *parts;
	int nparts;
	unsigned flags;            /* OR of all parts' flags (MIME_TOO_MANY is on the multipart
	                              that lost children) */
};

/* Parse msg[0..len).  Always fills *out (at least parts[0]) and returns
 * 0; out of memory exits in the x allocators.  Free with
 * mime_message_free(). */
int mime_parse(const char *msg, size_t len, struct mime_message *out);

/* Free the parts array and zero *m. */
void mime_message_free(struct mime_message *m);

/* Append p's decoded body to out: base64 and quoted-printable decoded,
 * anything else (multiparts too) copied as is.  Sets MIME_BAD_BASE64 /
 * MIME_BAD_QP in *flags when malformed, decoding what can be decoded
 * (invalid base64 characters are skipped, invalid =XX escapes are kept
 * literally).  QP: trailing spaces and tabs of each line are dropped,
 * hard line ends are kept as they are in the message (CRLF or LF). */
void mime_decode_body(const struct mime_part *p, struct buf *out, unsigned *flags);

/* Header fields of a raw header block, in order:
 *
 *	struct mime_hdr_iter it;
 *	mime_hdr_begin(&it, p->head, p->head_len);
 *	while (mime_hdr_next(&it))
 *		use(it.name.data, it.value.data, it.value.len);
 *	mime_hdr_end(&it);
 *
 * name is the field name as written (compare with strcasecmp); value is
 * unfolded (line breaks before WSP removed, the WSP kept) and trimmed of
 * leading and trailing whitespace.  Both are NUL-terminated, valid until
 * the next call.  Lines without a colon (or with an invalid field name)
 * and stray continuation lines are skipped and set MIME_BAD_HEADER in
 * it.flags.  An empty line ends the block, so a whole message may be
 * passed too. */
struct mime_hdr_iter {
	const char *p, *end;       /* the unread rest of the block */
	struct buf name, value;    /* the current field */
	size_t raw_len;            /* the current field's octets in the block, line ends included */
	unsigned flags;            /* MIME_BAD_HEADER if a line was skipped */
};

void mime_hdr_begin(struct mime_hdr_iter *it, const char *head, size_t len);
int mime_hdr_next(struct mime_hdr_iter *it);   /* 1: a field in name/value, 0: the end */
void mime_hdr_end(struct mime_hdr_iter *it);   /* free the buffers */

/* Append the (unfolded, trimmed) value of the first field called name
 * (case-insensitive) in the block to out.  Returns 1 if found. */
int mime_hdr_find(const char *head, size_t len, const char *name, struct buf *out);

/* Append in[0..len) to out with RFC 2047 encoded-words decoded to UTF-8;
 * whitespace between adjacent encoded-words is dropped, adjacent words in
 * the same charset are joined before conversion (so a character may span
 * them).  Text outside encoded-words is copied as is; words that cannot be
 * decoded (unknown charset, invalid base64) are left as they are. */
void mime_decode_words(const char *in, size_t len, struct buf *out);

/* Find parameter name (case-insensitive) in a structured field value such
 * as "text/plain; charset=utf-8" and append its value to out.  Handles
 * quoted strings, RFC 2231 continuations (name*0=, name*1*=, ... up to
 * name*127) and charset'lang'%XX encoding, converted to UTF-8; the RFC
 * 2231 form wins over a plain name= given as well.  RFC 2047 words are
 * NOT decoded here (use mime_decode_words).  Returns 1 if found. */
int mime_param(const char *value, const char *name, struct buf *out);

#endif
