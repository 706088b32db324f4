/*
 * smtp_syntax.h - the smtp transport's pure parsers: what a server sends
 * (reply lines, multi-line replies, EHLO keywords) and the next-hop
 * syntax.  No I/O, no allocation, no state beyond the caller's structs,
 * so tests/unit/test-smtp-client.c runs them table-driven; smtp_client.c
 * and smtp_dest.c are their only other users.  Internal to the module
 * (not in api/): the module's public surface is its descriptor.
 */
#ifndef PETREL_SMTP_SYNTAX_H
#define PETREL_SMTP_SYNTAX_H

#include <stddef.h>

/* Bounds on what a server may send (RFC 5321 4.5.3.1 says 512 octets a
 * line; be generous, not unbounded). */
#define SMTP_LINE_MAX 2048
#define SMTP_REPLY_LINES 100

/* --- lines --- */

enum smtp_line_status {
	SMTP_LINE_MORE = 0,          /* no complete line yet: read more */
	SMTP_LINE_OK = 1,            /* a line, CRLF removed */
	SMTP_LINE_NUL = -1,          /* a NUL byte before the end of the line */
	SMTP_LINE_BARE_LF = -2,      /* LF without CR before it */
	SMTP_LINE_TOO_LONG = -3,     /* more than SMTP_LINE_MAX bytes without LF */
};

/* The next line of buf[0..avail): on SMTP_LINE_OK the line is
 * buf[0..*len) (without CRLF) and *used bytes are consumed. */
enum smtp_line_status smtp_line_next(const char *buf, size_t avail, size_t *len, size_t *used);

/* --- replies --- */

enum smtp_reply_status {
	SMTP_REPLY_MORE = 0,         /* a continuation line ("250-"): more follow */
	SMTP_REPLY_DONE = 1,         /* the last line ("250 " or "250"): complete */
	SMTP_REPLY_MALFORMED = -1,   /* not "DDD", "DDD " or "DDD-" */
	SMTP_REPLY_CODE_CHANGED = -2,/* a line's code differs from the first's */
	SMTP_REPLY_TOO_MANY = -3,    /* more than SMTP_REPLY_LINES lines */
};

/* A reply being read.  Zero it before the first line; after DONE it
 * holds the complete reply until the next line starts a new one. */
struct smtp_reply {
	int code;
	int lines;                   /* lines of this reply so far */
	int done;
	size_t textlen;
	char text[420];              /* "CODE text of line 1 text of line 2 ..." (truncated) */
};

/* Add one line (CRLF removed).  *linetext: the text after "DDD-" of this
 * line (for EHLO keywords), "" when there is none. */
enum smtp_reply_status smtp_reply_add(struct smtp_reply *r, const char *line, size_t len,
                                      const char **linetext);

/* --- EHLO --- */

#define CAP_PIPELINING 0x01
#define CAP_SIZE       0x02
#define CAP_8BITMIME   0x04
#define CAP_SMTPUTF8   0x08
#define CAP_DSN        0x10
#define CAP_STARTTLS   0x20
#define CAP_AUTH_PLAIN 0x40
#define CAP_AUTH_LOGIN 0x80

/* One EHLO keyword line (the text after "250-"), case-insensitive:
 * sets its CAP_ bit in *caps; "SIZE n" sets *size_limit to n (0: SIZE
 * without a number, or one that is not a number: no fixed limit, RFC
 * 1870 4); "AUTH m1 m2" (or "AUTH=m1 m2") sets the mechanisms it knows. */
void smtp_ehlo_keyword(const char *kw, unsigned *caps, unsigned long long *size_limit);

/* --- next hop --- */

/* Split a next hop: "[host]:port" and "[host]" (brackets: no MX lookup,
 * *mx = 0; "[IPv6:addr]" too), "host:port" and "host" (*mx = 1).  *port
 * is set only when the next hop names one (1 to 65535, digits only).
 * Returns 0, or -1 for anything else. */
int smtp_parse_nexthop(const char *nh, char *host, size_t size, int *mx, int *port)
	__attribute__((warn_unused_result));

/* The longest Unix socket path, NUL included (sockaddr_un.sun_path). */
#define SMTP_UNIX_PATH_MAX 108

/* Split an LMTP next hop, which is never looked up by MX (RFC 2033 is
 * for a known server): "unix:/path" or "/path" (a Unix socket: *is_unix
 * = 1, host = the absolute path, shorter than SMTP_UNIX_PATH_MAX, no
 * control bytes), else "inet:" optionally, then the forms of
 * smtp_parse_nexthop ("[host]:port", "host:port", "[host]", "host":
 * *is_unix = 0, *port set only when named).  Returns 0 or -1. */
int smtp_parse_lmtp_nexthop(const char *nh, char *host, size_t size, int *port, int *is_unix)
	__attribute__((warn_unused_result));

#endif
