/*
 * test-auth.c - the AUTH parsers of src/auth.c, table by table: strict
 * base64, the SASL PLAIN message, password file lines, and a password
 * check against real crypt(3) hashes.
 */
#include "auth.h"
#include "tap.h"

#include <crypt.h>
#include <stdlib.h>
#include <unistd.h>

static const struct {
	const char *label;
	const char *in;
	long want_len;          /* -1: refused */
	const char *want;
} b64_cases[] = {
	{ "empty", "", 0, "" },
	{ "one byte", "YQ==", 1, "a" },
	{ "two bytes", "YWI=", 2, "ab" },
	{ "three bytes", "YWJj", 3, "abc" },
	{ "PLAIN message", "AGFsaWNlAHNlY3JldA==", 13, "\0alice\0secret" },
	{ "missing padding", "YQ", -1, NULL },
	{ "bad length", "YWJjZ", -1, NULL },
	{ "padding inside", "YQ==YWJj", -1, NULL },
	{ "pad then data", "Y=Jj", -1, NULL },
	{ "single pad then char", "YW=j", -1, NULL },
	{ "three pads", "Y===", -1, NULL },
	{ "not base64", "YW!j", -1, NULL },
	{ "space", "YW Jj", -1, NULL },
	{ "url-safe alphabet", "YW-_", -1, NULL },
};

static void test_base64(void)
{
	char out[64];
	for (size_t i = 0; i < sizeof b64_cases / sizeof b64_cases[0]; i++) {
		long n = auth_base64_decode(b64_cases[i].in, strlen(b64_cases[i].in), out);
		int pass = n == b64_cases[i].want_len &&
		           (n < 0 || !memcmp(out, b64_cases[i].want, (size_t)n));
		tap_ok(pass, "base64: %s", b64_cases[i].label);
		if (!pass)
			tap_diag("got %ld", n);
	}
	char enc[64];
	auth_base64_encode("Username:", 9, enc);
	TAP_STREQ(enc, "VXNlcm5hbWU6", "base64 encode: the LOGIN prompt");
	auth_base64_encode("ab", 2, enc);
	TAP_STREQ(enc, "YWI=", "base64 encode: padding");
}

static const struct {
	const char *label;
	const char *msg;
	size_t len;
	const char *user, *pass;    /* NULL: refused */
} plain_cases[] = {
	{ "no authzid", "\0alice\0secret", 13, "alice", "secret" },
	{ "authzid = authcid", "alice\0alice\0secret", 18, "alice", "secret" },
	{ "authzid of another user", "bob\0alice\0secret", 16, NULL, NULL },
	{ "one NUL", "alice\0secret", 12, NULL, NULL },
	{ "three NULs", "\0alice\0sec\0ret", 14, NULL, NULL },
	{ "empty user", "\0\0secret", 8, NULL, NULL },
	{ "empty password", "\0alice\0", 7, NULL, NULL },
	{ "nothing", "", 0, NULL, NULL },
};

static void test_plain(void)
{
	for (size_t i = 0; i < sizeof plain_cases / sizeof plain_cases[0]; i++) {
		char buf[64];
		memcpy(buf, plain_cases[i].msg, plain_cases[i].len);
		const char *user = NULL, *pass = NULL, *why = NULL;
		int r = auth_plain_split(buf, plain_cases[i].len, &user, &pass, &why);
		int pass_ok = plain_cases[i].user
			? r == 0 && !strcmp(user, plain_cases[i].user) && !strcmp(pass, plain_cases[i].pass)
			: r < 0 && why;
		tap_ok(pass_ok, "PLAIN: %s", plain_cases[i].label);
	}
	char big[600] = "";
	memset(big + 1, 'u', 300);      /* "\0uuu...\0pw" */
	memcpy(big + 302, "pw", 2);
	const char *u, *p, *why;
	tap_ok(auth_plain_split(big, 304, &u, &p, &why) < 0, "PLAIN: user over 255 octets");
}

static char *temp_file(const char *text)
{
	char *path = strdup("/tmp/petrel-test-auth-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
	return path;
}

static void test_db(void)
{
	/* SHA-512: fast enough for a unit test */
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd = {0};
	if (!crypt_gensalt_rn("$6$", 0, NULL, 0, setting, sizeof setting))
		abort();
	char *hash = strdup(crypt_r("s3cret", setting, &cd));
	char *text;
	if (asprintf(&text, "# users\n\n  alice:%s  \nbob:%s\n", hash, hash) < 0)
		abort();
	char *path = temp_file(text);
	struct buf errs = {0};
	struct auth_db *db = auth_db_load(path, &errs);
	tap_ok(db && auth_db_count(db) == 2, "password file: comments, blank lines, spaces");
	if (db) {
		tap_ok(auth_db_verify(db, "alice", "s3cret"), "verify: right password");
		tap_ok(!auth_db_verify(db, "alice", "s3cret "), "verify: wrong password");
		tap_ok(!auth_db_verify(db, "Alice", "s3cret"), "verify: user names match exactly");
		tap_ok(!auth_db_verify(db, "carol", "s3cret"), "verify: unknown user");
	}
	auth_db_free(&db);
	tap_ok(db == NULL, "auth_db_free clears the pointer");
	unlink(path);
	free(path);
	free(text);

	static const struct {
		const char *label, *line, *error;
	} bad[] = {
		{ "no colon", "alice\n", ":1: auth_passwords: expected user:HASH" },
		{ "empty user", ":$6$x$y\n", ":1: auth_passwords: empty user name" },
		{ "empty hash", "alice:\n", ":1: auth_passwords: empty hash" },
		{ "not a hash", "alice:secret\n", ":1: auth_passwords: not a crypt(3) hash" },
		{ "DES hash", "alice:ab01234567890\n", ":1: auth_passwords: not a crypt(3) hash" },
		{ "MD5 hash", "alice:$1$abcdefgh$0123456789abcdefghijkl\n", "a legacy hash method" },
		{ "extra field", "alice:$6$x$y:1000\n", "more than one ':'" },
		{ "space in user", "al ice:$6$x$y\n", "space or control character" },
		{ "second line", "# c\nalice:$6$abc$def\nalice:$6$abc$def\n", ":3: auth_passwords: user listed twice" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		path = temp_file(bad[i].line);
		buf_reset(&errs);
		db = auth_db_load(path, &errs);
		int pass = !db && errs.data && strstr(errs.data, path) && strstr(errs.data, bad[i].error);
		tap_ok(pass, "password file error: %s", bad[i].label);
		if (!pass)
			tap_diag("errors: %s", errs.data ? errs.data : "(none)");
		auth_db_free(&db);
		unlink(path);
		free(path);
	}
	buf_reset(&errs);
	db = auth_db_load("/nonexistent/passwd", &errs);
	tap_ok(!db && errs.data && strstr(errs.data, "/nonexistent/passwd: cannot read"),
	       "password file missing");
	buf_free(&errs);
	free(hash);
}

int main(void)
{
	test_base64();
	test_plain();
	test_db();
	return tap_done();
}
