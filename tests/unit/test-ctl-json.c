/*
 * test-ctl-json.c - the control socket's JSON (src/ctl_json.c): what the
 * daemon writes is valid JSON that petrelctl reads back, whatever bytes
 * a string holds; the reader takes what the protocol sends and refuses
 * what is not JSON.
 */
#include "ctl_json.h"
#include "mem.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static void round_trip(const char *label, const char *in, size_t n, const char *want)
{
	struct buf b = {0};
	ctl_json_quote(&b, in, n);
	struct ctl_json *v = ctl_json_parse(b.data, b.len);
	int ok = v && v->t == CJ_STR && !strcmp(v->str, want);
	tap_ok(ok, "quote and read back: %s", label);
	if (!ok)
		tap_diag("wrote %s, read %s", b.data, v && v->str ? v->str : "(nothing)");
	ctl_json_free(&v);
	buf_free(&b);
}

static const struct {
	const char *label;
	const char *text;
	int ok;
} docs[] = {
	{ .label = "final ok", .text = "{\"ok\":true}", .ok = 1 },
	{ .label = "error line", .text = "{\"ok\":false,\"error\":\"x\",\"code\":\"usage\"}", .ok = 1 },
	{ .label = "nested", .text = "{\"a\":[1,2,{\"b\":null}],\"c\":-1.5e3}", .ok = 1 },
	{ .label = "empty containers", .text = "{\"a\":[],\"b\":{}}", .ok = 1 },
	{ .label = "trailing space", .text = "{\"ok\":true}  ", .ok = 1 },
	{ .label = "surrogate pair", .text = "\"\\ud83d\\ude00\"", .ok = 1 },
	{ .label = "truncated object", .text = "{\"ok\":tru", .ok = 0 },
	{ .label = "trailing garbage", .text = "{\"ok\":true}x", .ok = 0 },
	{ .label = "missing colon", .text = "{\"ok\" true}", .ok = 0 },
	{ .label = "raw control byte in a string", .text = "\"a\nb\"", .ok = 0 },
	{ .label = "bad escape", .text = "\"\\q\"", .ok = 0 },
	{ .label = "short \\u", .text = "\"\\u12\"", .ok = 0 },
	{ .label = "unterminated string", .text = "\"abc", .ok = 0 },
	{ .label = "empty", .text = "", .ok = 0 },
	{ .label = "too deep",
	  .text = "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", .ok = 0 },
};

int main(void)
{
	round_trip("plain", "a@example.org", 13, "a@example.org");
	round_trip("quote and backslash", "a\"b\\c", 5, "a\"b\\c");
	round_trip("controls", "a\tb\r\nc\x7f", 7, "a\tb\r\nc\x7f");
	round_trip("NUL inside", "a\0b", 3, "a");   /* the reader's C string ends at the NUL */
	round_trip("UTF-8 kept", "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80", 15,
	           "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80");
	round_trip("latin-1 byte becomes U+FFFD", "gr\xfc\xdf", 4, "gr\xef\xbf\xbd\xef\xbf\xbd");
	round_trip("truncated sequence", "x\xe2\x82", 3, "x\xef\xbf\xbd\xef\xbf\xbd");
	round_trip("overlong encoding refused", "\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd");
	round_trip("UTF-16 surrogate as UTF-8 refused", "\xed\xa0\x80", 3,
	           "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
		struct ctl_json *v = ctl_json_parse(docs[i].text, strlen(docs[i].text));
		tap_ok((v != NULL) == docs[i].ok, "parse: %s", docs[i].label);
		ctl_json_free(&v);
	}
	const char *line = "{\"qid\":\"Q1\",\"size\":221,\"held\":true,\"rcpts\":[{\"address\":\"u@x\"}]}";
	struct ctl_json *v = ctl_json_parse(line, strlen(line));
	tap_ok(v && !strcmp(ctl_json_str(v, "qid"), "Q1") && ctl_json_num(v, "size") == 221 &&
	       ctl_json_bool(v, "held") && !*ctl_json_str(v, "absent") &&
	       ctl_json_get(v, "rcpts")->n == 1 &&
	       !strcmp(ctl_json_str(&ctl_json_get(v, "rcpts")->items[0], "address"), "u@x"),
	       "members by name");
	ctl_json_free(&v);
	return tap_done();
}
