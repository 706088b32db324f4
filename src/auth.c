/*
 * auth.c - the password file, SASL PLAIN, base64 and crypt(3) checks
 * (see auth.h).
 *
 * Passwords pass through here only: verify() wipes its hash output, and
 * the callers wipe their copies (explicit_bzero).
 */
#include "auth.h"
#include "log.h"

#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELD_MAX 255        /* RFC 4616: authcid, passwd up to 255 octets */

struct auth_user {
	char *name;
	char *hash;
};

struct auth_db {
	struct auth_user *users;
	int n;
};

int auth_db_count(const struct auth_db *db)
{
	return db->n;
}

static const struct auth_user *find_user(const struct auth_db *db, const char *name)
{
	for (int i = 0; i < db->n; i++)
		if (!strcmp(db->users[i].name, name))
			return &db->users[i];
	return NULL;
}

/* Why a user name is unusable, or NULL. */
static const char *bad_name(const char *s)
{
	if (!*s)
		return "empty user name";
	if (strlen(s) > FIELD_MAX)
		return "user name longer than 255 octets";
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return "space or control character in the user name";
	return NULL;
}

/* Why a hash is unusable, or NULL.  Only the "$id$...$hash" methods:
 * a DES or MD5 hash, or a typo that crypt(3) would take for one, is
 * refused rather than left to fail every login. */
static const char *bad_hash(const char *h)
{
	if (!*h)
		return "empty hash";
	if (strchr(h, ':'))
		return "more than one ':' (expected user:HASH)";
	const char *last = strrchr(h, '$');
	int dollars = 0;
	for (const char *p = h; *p; p++)
		dollars += *p == '$';
	if (h[0] != '$' || dollars < 3 || !last[1])
		return "not a crypt(3) hash (\"$y$...\" or \"$6$...\", e.g. from mkpasswd)";
#ifdef CRYPT_CHECKSALT_AVAILABLE
	switch (crypt_checksalt(h)) {
	case CRYPT_SALT_OK:
		break;
	case CRYPT_SALT_METHOD_LEGACY:
		return "a legacy hash method: use yescrypt ($y$) or SHA-512 ($6$)";
	default:
		return "not a crypt(3) hash this system supports";
	}
#endif
	return NULL;
}

/* One line (newline removed); -1 with *why when it is malformed. */
static int parse_line(struct auth_db *db, char *line, const char **why)
{
	char *p = line;
	while (*p == ' ' || *p == '\t')
		p++;
	if (!*p || *p == '#')
		return 0;
	size_t len = strlen(p);
	while (len && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r'))
		p[--len] = 0;
	char *colon = strchr(p, ':');
	if (!colon) {
		*why = "expected user:HASH";
		return -1;
	}
	*colon = 0;
	const char *hash = colon + 1;
	if ((*why = bad_name(p)) || (*why = bad_hash(hash)))
		return -1;
	if (find_user(db, p)) {
		*why = "user listed twice";
		return -1;
	}
	db->users = xrealloc(db->users, (size_t)(db->n + 1) * sizeof *db->users);
	db->users[db->n].name = xstrdup(p);
	db->users[db->n].hash = xstrdup(hash);
	db->n++;
	return 0;
}

struct auth_db *auth_db_load(const char *path, struct buf *errs)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		buf_addf(errs, "%s: cannot read: %s\n", path, strerror(errno));
		return NULL;
	}
	struct auth_db *db = xcalloc(1, sizeof *db);
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0, bad = 0;
	while (getline(&line, &cap, f) >= 0) {
		lineno++;
		line[strcspn(line, "\n")] = 0;
		const char *why;
		if (parse_line(db, line, &why) < 0) {
			buf_addf(errs, "%s:%d: auth_passwords: %s\n", path, lineno, why);
			bad = 1;
		}
	}
	if (ferror(f)) {
		buf_addf(errs, "%s: read error: %s\n", path, strerror(errno));
		bad = 1;
	}
	fclose(f);
	if (line)
		explicit_bzero(line, cap);   /* it held hashes */
	free(line);
	if (bad)
		auth_db_free(&db);
	else if (db->n == 0)
		log_warn("%s: no users: every AUTH will fail", path);
	return db;
}

void auth_db_free(struct auth_db **dbp)
{
	struct auth_db *db = *dbp;
	if (!db)
		return;
	for (int i = 0; i < db->n; i++) {
		free(db->users[i].name);
		free(db->users[i].hash);
	}
	free(db->users);
	xfree(dbp);
}

/* Constant time for equal lengths: how long a compare takes says nothing
 * about how much of the hash matched. */
static bool same(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = la != lb;
	for (size_t i = 0; i < la && i < lb; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

bool auth_db_verify(const struct auth_db *db, const char *user, const char *pass)
{
	const struct auth_user *u = find_user(db, user);
	if (!u && db->n == 0)
		return false;
	/* An unknown user is checked against someone's hash anyway. */
	const char *hash = u ? u->hash : db->users[0].hash;
	struct crypt_data *cd = xcalloc(1, sizeof *cd);
	const char *out = crypt_r(pass, hash, cd);
	/* libxcrypt returns a string starting with '*' on failure */
	bool ok = u && out && out[0] != '*' && same(out, hash);
	explicit_bzero(cd, sizeof *cd);
	free(cd);
	return ok;
}

/* ---- base64 ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

long auth_base64_decode(const char *in, size_t len, char *out)
{
	if (len % 4)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			char c = in[i + k];
			if (c == '=' && i + 4 == len && k >= 2) {
				/* '=' only at the very end: "x=" then "=" */
				if (k == 2 && in[i + 3] != '=')
					return -1;
				pad++;
				v[k] = 0;
				continue;
			}
			if (pad || (v[k] = b64_value(c)) < 0)
				return -1;
		}
		unsigned bits = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
		out[o++] = (char)(bits >> 16);
		if (pad < 2)
			out[o++] = (char)(bits >> 8 & 0xff);
		if (pad < 1)
			out[o++] = (char)(bits & 0xff);
	}
	out[o] = 0;
	return (long)o;
}

void auth_base64_encode(const void *in, size_t len, char *out)
{
	const unsigned char *p = in;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		unsigned bits = (unsigned)p[i] << 16;
		if (i + 1 < len)
			bits |= (unsigned)p[i + 1] << 8;
		if (i + 2 < len)
			bits |= p[i + 2];
		out[o++] = b64[bits >> 18];
		out[o++] = b64[bits >> 12 & 63];
		out[o++] = i + 1 < len ? b64[bits >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? b64[bits & 63] : '=';
	}
	out[o] = 0;
}

/* ---- SASL PLAIN ---- */

int auth_plain_split(char *msg, size_t len, const char **user, const char **pass,
                     const char **why)
{
	msg[len] = 0;                    /* the password's end */
	char *nul1 = memchr(msg, 0, len);
	char *nul2 = nul1 ? memchr(nul1 + 1, 0, len - (size_t)(nul1 + 1 - msg)) : NULL;
	if (!nul2 || memchr(nul2 + 1, 0, len - (size_t)(nul2 + 1 - msg))) {
		*why = "malformed PLAIN message";
		return -1;
	}
	const char *authzid = msg, *authcid = nul1 + 1, *passwd = nul2 + 1;
	size_t plen = len - (size_t)(passwd - msg);
	if (!*authcid || !plen) {
		*why = "empty user name or password";
		return -1;
	}
	if (strlen(authcid) > FIELD_MAX || plen > FIELD_MAX || strlen(authzid) > FIELD_MAX) {
		*why = "user name or password longer than 255 octets";
		return -1;
	}
	if (*authzid && strcmp(authzid, authcid)) {
		*why = "authorization identity differs from the user name";
		return -1;
	}
	*user = authcid;
	*pass = passwd;
	return 0;
}
