/*
 * fuzz_smtp_reply.c - libFuzzer harness for what a remote SMTP server
 * sends the smtp transport (modules/smtp/smtp_syntax.c), fed as the
 * client feeds it: the bytes are split into lines by smtp_line_next(),
 * each line goes to smtp_reply_add() in a heap buffer of exactly its
 * length plus the NUL the client writes there, and the text of every
 * line of a 2xx reply after the first to smtp_ehlo_keyword().  The first
 * line is also parsed as a next hop (smtp_parse_nexthop()).
 *
 * Besides "no crash, no out-of-bounds read", it checks what
 * smtp_syntax.h promises:
 *   - a line is OK only with CRLF: used == len + 2 <= what was given,
 *     and it holds no LF and no NUL;
 *   - a reply's text is terminated, strlen(text) == textlen < its size,
 *     it starts with the 3-digit code, and no reply has more than
 *     SMTP_REPLY_LINES lines;
 *   - a parsed next hop has a non-empty host that fits, without space
 *     or control characters, and a port from 1 to 65535.
 * A parse error ends the session, as in the client.
 */
#include "../../modules/smtp/smtp_syntax.h"
#include "fuzz_common.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_nexthop(const char *in, size_t n)
{
	char *s = malloc(n + 1);
	memcpy(s, in, n);
	s[n] = 0;
	char host[300];
	int mx = -1, port = 25;
	if (smtp_parse_nexthop(s, host, sizeof host, &mx, &port) == 0) {
		size_t l = strlen(host);
		if (l == 0 || l >= sizeof host || (mx != 0 && mx != 1) || port < 1 || port > 65535)
			fuzz_fail("nexthop '%s': host '%s' mx %d port %d", s, host, mx, port);
		for (size_t i = 0; i < l; i++)
			if (isspace((unsigned char)host[i]) || iscntrl((unsigned char)host[i]))
				fuzz_fail("nexthop '%s': host with space or control character", s);
	}
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	memcpy(buf, data, size);
	struct smtp_reply r;
	memset(&r, 0, sizeof r);
	unsigned caps = 0;
	unsigned long long limit = 0;
	size_t off = 0;
	int first = 1;
	while (off < size) {
		size_t len = 0, used = 0;
		enum smtp_line_status st = smtp_line_next(buf + off, size - off, &len, &used);
		if (st != SMTP_LINE_OK)
			break;
		if (used != len + 2 || used > size - off || buf[off + len] != '\r')
			fuzz_fail("line: len %zu used %zu of %zu", len, used, size - off);
		if (memchr(buf + off, '\n', len) || memchr(buf + off, 0, len))
			fuzz_fail("line: an LF or a NUL inside");
		if (first)
			check_nexthop(buf + off, len);
		first = 0;
		char *line = malloc(len + 1);
		memcpy(line, buf + off, len);
		line[len] = 0;
		const char *text;
		enum smtp_reply_status rs = smtp_reply_add(&r, line, len, &text);
		if (rs >= 0) {
			if (r.textlen >= sizeof r.text || strlen(r.text) != r.textlen)
				fuzz_fail("reply: textlen %zu, strlen %zu", r.textlen, strlen(r.text));
			if (r.lines < 1 || r.lines > SMTP_REPLY_LINES || r.code < 0 || r.code > 999)
				fuzz_fail("reply: %d lines, code %d", r.lines, r.code);
			if (r.textlen < 4 || !isdigit((unsigned char)r.text[0]) || r.text[3] != ' ')
				fuzz_fail("reply: text '%s'", r.text);
			if (r.lines > 1 && r.code / 100 == 2)
				smtp_ehlo_keyword(text, &caps, &limit);
			if (!(caps & CAP_SIZE) && limit)
				fuzz_fail("ehlo: a size limit without SIZE");
		}
		free(line);
		if (rs < 0)
			break;
		off += used;
	}
	free(buf);
	return 0;
}
