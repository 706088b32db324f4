/*
 * msa_senders.h - the msa module's sender table and From: reader.
 *
 * The sender table (modules.msa.senders) says which addresses a login may
 * use besides the ones it owns by default.  It is a text file of lines
 *
 *     login: address, @domain, ...
 *
 * "address" is one envelope address (local@domain); "@domain" is every
 * address of that domain.  A login may have several lines; they add up.
 * Blank lines and lines whose first non-blank character is '#' are
 * skipped.  A line is at most MSA_SENDERS_LINE_MAX octets (its line end
 * not counted); the file at most MSA_SENDERS_FILE_MAX octets.  Logins are
 * compared exactly (as the password file does), addresses and domains
 * without regard to case (they are stored in lower case).
 *
 * Errors are "LINE: reason" (msa_senders_parse) or "FILE:LINE: reason"
 * (msa_senders_load), written into the caller's buffer; nothing is kept of
 * a table that has an error.
 *
 * The From: reader splits an RFC 5322 address list (the unfolded value of
 * a From: field) into its addr-specs: display names, comments, group
 * names and the obsolete route of an angle address are dropped; quoted
 * strings in a local part are kept as written.
 *
 * Ownership: a table belongs to the caller of parse/load and is freed with
 * msa_senders_free(), which clears the pointer.  msa_from_parse() hands
 * out an array of strings freed with msa_from_free().
 */
#ifndef MSA_SENDERS_H
#define MSA_SENDERS_H

#include <stddef.h>

#define MSA_SENDERS_LINE_MAX 4096
#define MSA_SENDERS_FILE_MAX (16u * 1024 * 1024)
#define MSA_FROM_MAX 64          /* addresses in one From: field */

struct msa_senders;

/* Parse a whole table held in text[0..len).  0, or -1 with "LINE: reason"
 * in err (errsize bytes). */
__attribute__((warn_unused_result))
int msa_senders_parse(const char *text, size_t len, struct msa_senders **out, char *err,
                      size_t errsize);

/* Read and parse the file at path.  0, or -1 with "PATH:LINE: reason" (or
 * "PATH: reason" when it cannot be read) in err. */
__attribute__((warn_unused_result))
int msa_senders_load(const char *path, struct msa_senders **out, char *err, size_t errsize);

/* 1 when the table lets login send as address (local@domain), else 0.
 * A NULL table allows nothing. */
int msa_senders_allows(const struct msa_senders *t, const char *login, const char *address);

/* Number of (login, entry) pairs, for the log. */
size_t msa_senders_count(const struct msa_senders *t);

void msa_senders_free(struct msa_senders **t);

/* The addr-specs of an address list.  Returns the number found (0 for an
 * empty list or a group with no member) and sets *addrs, or -1 when the
 * value cannot be read as an address list (an unterminated quoted string,
 * comment or angle address, text after an angle address, more than
 * MSA_FROM_MAX addresses, out of memory); *addrs is NULL then. */
__attribute__((warn_unused_result))
int msa_from_parse(const char *value, char ***addrs);
void msa_from_free(char ***addrs, int n);

#endif
