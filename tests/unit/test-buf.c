/*
 * test-buf.c - table-driven tests of the byte buffer helpers (src/mem.c)
 * that guard what goes into generated header fields.
 *
 * buf_add_line() is what the DSN generator (src/bounce.c) writes a sender,
 * an address and a transport's reason with: a fuzz finding
 * (tests/fuzz/corpus/bounce/sender-lf-injects-header) showed a LF in the
 * sender adding a header field to the report.  Invariant checked: the
 * output has the input's length and holds no byte below 0x20 nor DEL.
 */
#include "mem.h"
#include "tap.h"

#include <string.h>

static const struct {
	const char *name, *in, *want;
} line_cases[] = {
	{ .name = "plain text is kept", .in = "user@example.org", .want = "user@example.org" },
	{ .name = "LF cannot start a field", .in = "a@b\nBcc: x@y", .want = "a@b Bcc: x@y" },
	{ .name = "CRLF cannot start a field", .in = "a@b\r\nX: 1", .want = "a@b  X: 1" },
	{ .name = "lone CR", .in = "why\rnot", .want = "why not" },
	{ .name = "TAB, ESC and DEL", .in = "\t\x1b[31m\x7f", .want = "  [31m " },
	{ .name = "UTF-8 is kept", .in = "d\xc3\xa9j\xc3\xa0", .want = "d\xc3\xa9j\xc3\xa0" },
	{ .name = "empty", .in = "", .want = "" },
};

int main(void)
{
	for (size_t i = 0; i < sizeof line_cases / sizeof line_cases[0]; i++) {
		struct buf b = {0};
		buf_adds(&b, "To: <");
		buf_add_line(&b, line_cases[i].in);
		TAP_STREQ(b.data + 5, line_cases[i].want, line_cases[i].name);
		tap_ok(b.len == 5 + strlen(line_cases[i].in), "%s: length kept", line_cases[i].name);
		buf_free(&b);
	}
	/* appended after consumed bytes (off > 0) the result stays terminated */
	struct buf b = {0};
	buf_adds(&b, "0123456789");
	buf_consume(&b, 4);
	buf_add_line(&b, "x\ny");
	TAP_STREQ(b.data, "456789x y", "after buf_consume");
	buf_free(&b);
	return tap_done();
}
