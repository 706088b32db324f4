/*
 * fuzz_smtp_parse.c - libFuzzer harness for the SMTP command and address
 * parser (src/smtp_parse.c).
 *
 * The input is one command line without its CRLF, in a heap buffer of
 * exactly its length (no NUL after it), so ASan sees any read past it.
 * Besides "no crash, no out-of-bounds read", it checks what the parser
 * promises in smtp_parse.h:
 *   - a refused line gets a reply "DDD D.D.D text" (3 digits, a space);
 *   - a parsed MAIL/RCPT address, formatted with smtp_addr_format() and
 *     parsed again as "<formatted>", gives the same local part (as
 *     written and unquoted), domain and flags (what the spool and the
 *     router get is what the client sent);
 *   - smtp_parse_path() never puts *end outside the input.
 * The same bytes are also fed to smtp_parse_path() directly (the first
 * byte chooses allow_null / allow_utf8), as qmsg.c's addr_split() does.
 */
#include "smtp_parse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, const char *in, size_t n)
{
	fprintf(stderr, "fuzz-smtp-parse: %s; input %zu bytes: '%.*s'\n", what, n, (int)n, in);
	abort();
}

static void check_reply(const char *reply, const char *in, size_t n)
{
	if (!reply || strlen(reply) < 5 || reply[0] < '2' || reply[0] > '5' ||
	    reply[1] < '0' || reply[1] > '9' || reply[2] < '0' || reply[2] > '9' || reply[3] != ' ')
		die("a refused line without a proper reply", in, n);
}

/* Format a parsed address and parse it again: the same address. */
static void check_round_trip(const struct smtp_addr *a, bool allow_null, const char *in, size_t n)
{
	char text[SMTP_PATH_MAX * 2 + 8];
	int len = smtp_addr_format(a, text + 1, sizeof text - 2);
	if (len < 0)
		die("smtp_addr_format refused a parsed address", in, n);
	text[0] = '<';
	text[len + 1] = '>';
	size_t tl = (size_t)len + 2;
	char *copy = malloc(tl);
	memcpy(copy, text, tl);
	struct smtp_addr b;
	const char *end, *why;
	if (smtp_parse_path(copy, tl, allow_null, a->utf8, &b, &end, &why) < 0) {
		free(copy);
		die("a formatted address does not parse again", in, n);
	}
	if (end != copy + tl)
		die("a formatted address parses with bytes left over", in, n);
	free(copy);
	if (b.null != a->null || b.quoted != a->quoted || b.utf8 != a->utf8 ||
	    b.literal != a->literal || strcmp(b.local, a->local) ||
	    strcmp(b.local_plain, a->local_plain) || strcmp(b.domain, a->domain))
		die("an address changes when formatted and parsed again", in, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the session never hands the parser a longer line */
	if (size >= SMTP_CMD_LINE_MAX)
		return 0;
	char *line = malloc(size ? size : 1);
	memcpy(line, data, size);

	static struct smtp_cmd cmd;      /* large: not on the stack */
	const char *reply = NULL;
	if (smtp_parse_command(line, size, &cmd, &reply) < 0) {
		check_reply(reply, line, size);
	} else {
		if (!smtp_verb_name(cmd.verb))
			die("a parsed verb without a name", line, size);
		if (cmd.verb == SMTP_MAIL)
			check_round_trip(&cmd.addr, true, line, size);
		else if (cmd.verb == SMTP_RCPT)
			check_round_trip(&cmd.addr, false, line, size);
	}

	if (size >= 1) {
		struct smtp_addr a;
		const char *end = NULL, *why = NULL;
		bool allow_null = data[0] & 1, allow_utf8 = data[0] & 2;
		const char *p = line + 1;
		if (smtp_parse_path(p, size - 1, allow_null, allow_utf8, &a, &end, &why) == 0) {
			if (end < p || end > p + (size - 1))
				die("smtp_parse_path: *end outside the input", line, size);
			if (a.utf8 && !allow_utf8)
				die("smtp_parse_path: UTF-8 accepted without allow_utf8", line, size);
			if (a.null && !allow_null)
				die("smtp_parse_path: <> accepted without allow_null", line, size);
			check_round_trip(&a, allow_null, line, size);
		} else if (!why) {
			die("smtp_parse_path failed without a reason", line, size);
		}
	}
	free(line);
	return 0;
}
