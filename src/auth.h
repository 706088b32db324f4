/*
 * auth.h - SMTP AUTH credentials (RFC 4954): the password file, the SASL
 * PLAIN message (RFC 4616), base64, and checking a password.
 *
 * The password file (setting auth_passwords) holds "user:HASH" lines,
 * HASH a crypt(3) hash ($y$ yescrypt, $6$ SHA-512, ...); '#' comments and
 * blank lines are allowed.  It is read whole at start, before privileges
 * are dropped, and a bad line is a configuration error "FILE:LINE: why".
 * User names match exactly (case matters).
 *
 * No I/O besides the file, no session state: smtp_auth.c runs the dialog.
 * auth_db_verify() is slow on purpose (a hash costs tens of ms) and is
 * safe to call on worker threads: the db is read-only once loaded.
 * Nothing here logs or keeps a password.
 */
#ifndef PETREL_AUTH_H
#define PETREL_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "mem.h"

struct auth_db;

/* Read path; NULL with "FILE:LINE: why" lines added to errs. */
struct auth_db *auth_db_load(const char *path, struct buf *errs) __attribute__((warn_unused_result));
void auth_db_free(struct auth_db **db);
int auth_db_count(const struct auth_db *db);

/* Whether pass is user's password.  An unknown user costs the same time
 * as a wrong password (no user enumeration by timing). */
bool auth_db_verify(const struct auth_db *db, const char *user, const char *pass);

/* Strict base64 (RFC 4648, padding required, no whitespace) of in[0..len)
 * into out (size >= len * 3 / 4 + 1, NUL added).  Returns the decoded
 * length, or -1 when the text is not base64. */
long auth_base64_decode(const char *in, size_t len, char *out);
/* Encode len bytes; out must hold 4 * ((len + 2) / 3) + 1. */
void auth_base64_encode(const void *in, size_t len, char *out);

/* RFC 4616 "[authzid] NUL authcid NUL passwd", decoded, of len bytes in
 * a buffer of len + 1 (a NUL is written at msg[len]).  On success the
 * pointers point into msg, each string NUL-terminated.
 * -1 with *why: malformed, empty or over-long fields, or an authzid that
 * names someone else (acting for another user is not supported). */
int auth_plain_split(char *msg, size_t len, const char **user, const char **pass,
                     const char **why) __attribute__((warn_unused_result));

#endif
