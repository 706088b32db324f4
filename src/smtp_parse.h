/*
 * smtp_parse.h - the SMTP command and address parser (RFC 5321, RFC 6531).
 *
 * Pure functions: no I/O, no allocation, no global state.  The session
 * (smtp_server.c) hands one complete command line (without its CRLF) and
 * gets back either a parsed command or the exact reply to send.  Every
 * syntax rule the server enforces lives here, so the unit tests in
 * tests/unit/test-smtp-parse.c can cover it table by table.
 *
 * Ownership: parsed strings are copied into fixed buffers inside the
 * result structures; nothing points into the caller's line after return.
 */
#ifndef PETREL_SMTP_PARSE_H
#define PETREL_SMTP_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* RFC 5321 section 4.5.3.1 limits (octets). */
#define SMTP_LOCAL_MAX   64     /* local part */
#define SMTP_DOMAIN_MAX  255    /* domain */
#define SMTP_PATH_MAX    256    /* reverse-path / forward-path incl. <> */
#define SMTP_LINE_MAX    512    /* command line incl. CRLF (4.5.3.1.4) */
/* Lines longer than this are answered 500 5.5.6; we allow extensions
 * room beyond 512, as RFC 1869 section 4.1.2 asks. */
#define SMTP_CMD_LINE_MAX 2048

enum smtp_verb {
	SMTP_UNKNOWN = 0,
	SMTP_HELO, SMTP_EHLO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA, SMTP_BDAT,
	SMTP_RSET, SMTP_NOOP, SMTP_QUIT, SMTP_VRFY, SMTP_EXPN, SMTP_HELP,
	SMTP_STARTTLS, SMTP_AUTH,
};

/* A parsed mailbox.  An empty local part and domain with null == true is
 * the null reverse-path "<>". */
struct smtp_addr {
	bool null;                          /* "<>" */
	bool quoted;                        /* local part was a quoted-string */
	bool utf8;                          /* contains octets >= 0x80 */
	bool literal;                       /* domain is an address literal [..] */
	char local[SMTP_LOCAL_MAX * 2 + 3]; /* local part as written (quotes kept) */
	char local_plain[SMTP_LOCAL_MAX + 1]; /* quotes and backslashes removed */
	char domain[SMTP_DOMAIN_MAX + 1];   /* domain, lower-cased ASCII; literal keeps [] */
};

/* DSN (RFC 3461): the values match petrel/module.h's PETREL_NOTIFY_*. */
#define SMTP_NOTIFY_SUCCESS 0x01
#define SMTP_NOTIFY_FAILURE 0x02
#define SMTP_NOTIFY_DELAY   0x04
#define SMTP_NOTIFY_NEVER   0x08
#define SMTP_RET_FULL 1
#define SMTP_RET_HDRS 2
#define SMTP_ENVID_MAX 100              /* RFC 3461 4.4 */
#define SMTP_ORCPT_MAX 500              /* RFC 3461 4.2 */

enum smtp_body { SMTP_BODY_7BIT = 0, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };

struct smtp_cmd {
	enum smtp_verb verb;
	/* HELO/EHLO: the client's domain or address literal.
	 * VRFY/EXPN/HELP/AUTH: the argument text (may be empty). */
	char arg[SMTP_CMD_LINE_MAX];
	/* MAIL FROM / RCPT TO */
	struct smtp_addr addr;
	bool has_size;
	uint64_t size;                      /* MAIL SIZE= */
	enum smtp_body body;                /* MAIL BODY= */
	bool smtputf8;                      /* MAIL SMTPUTF8 */
	/* DSN (RFC 3461).  MAIL: RET= and ENVID= (as given, xtext);
	 * RCPT: NOTIFY= as SMTP_NOTIFY_* bits, ORCPT= as given
	 * ("rfc822;a+2Bb@c.example": type, ';', xtext). */
	int ret;                            /* 0, SMTP_RET_FULL or SMTP_RET_HDRS */
	char envid[SMTP_ENVID_MAX + 1];
	unsigned notify;                    /* 0: not given */
	char orcpt[SMTP_ORCPT_MAX + 1];
	/* BDAT */
	uint64_t chunk_size;
	bool last;                          /* BDAT ... LAST */
};

/*
 * smtp_parse_command - parse one command line.
 *   line/len: the line without its terminating CRLF.  The caller has
 *             already refused bare CR / bare LF and over-long lines.
 *   cmd:      filled on success.
 *   reply:    on failure, set to a complete static reply without CRLF,
 *             e.g. "501 5.5.2 Syntax: MAIL FROM:<address>".
 * Returns 0 on success, -1 on a syntax error (reply set).
 *
 * Replies used:
 *   500 5.5.1 Command unrecognized           unknown verb
 *   501 5.5.2 Syntax: ...                    bad arguments (each verb its text)
 *   501 5.1.7 Bad sender address syntax      MAIL path unparsable
 *   501 5.1.3 Bad recipient address syntax   RCPT path unparsable
 *   501 5.1.7/5.1.3 ... too long             length limits (4.5.3.1)
 *   555 5.5.4 Unsupported parameter          unknown MAIL/RCPT parameter
 *   501 5.5.4 Bad parameter value            SIZE=abc, BODY=foo, a parameter
 *                                            given twice, NOTIFY=NEVER,SUCCESS,
 *                                            RET=ALL, ENVID/ORCPT not xtext
 *                                            or too long, ORCPT without type
 *   553 5.6.7 ...                            UTF-8 address without SMTPUTF8
 *             (only checked for MAIL; RCPT needs session state, see below)
 * Verbs are case-insensitive; "MAIL FROM:" allows no space before the
 * path, and tolerates one or more spaces after the colon (as Postfix does).
 * RCPT TO:<Postmaster> (no domain) is accepted with domain "".
 * A source route "<@a,@b:user@c>" is accepted and ignored (RFC 5321 4.1.2).
 */
int smtp_parse_command(const char *line, size_t len, struct smtp_cmd *cmd,
                       const char **reply)
	__attribute__((warn_unused_result));

/*
 * smtp_parse_path - parse "<...>" starting at s (len octets available).
 *   allow_null: "<>" permitted (MAIL).
 *   allow_utf8: octets >= 0x80 permitted (SMTPUTF8 given).
 *   *end:       set to the first octet after '>'.
 * Returns 0 or -1; on -1 *why is a short static reason ("too long",
 * "bad local part", ...).
 */
int smtp_parse_path(const char *s, size_t len, bool allow_null, bool allow_utf8,
                    struct smtp_addr *out, const char **end, const char **why)
	__attribute__((warn_unused_result));

/* smtp_xtext_decode - undo xtext ("a+2Bb" -> "a+b") of n octets at in
 * into out (size octets, NUL-terminated).  Returns the length, or -1 when
 * it does not fit or is not xtext. */
int smtp_xtext_decode(const char *in, size_t n, char *out, size_t size);

/* smtp_addr_format - write "local@domain" (or "" for <>) into buf.
 * Returns the length, or -1 if size is too small. */
int smtp_addr_format(const struct smtp_addr *a, char *buf, size_t size);

/* smtp_verb_name - "MAIL", "RCPT", ... for logs. */
const char *smtp_verb_name(enum smtp_verb v);

#endif
