/*
 * sendmail_parse.h - what petrel-sendmail reads in a message: header
 * fields by name and the addresses of an RFC 5322 address list (To:, Cc:,
 * Bcc: for -t; a command-line recipient argument).  Pure functions over a
 * buffer, tested by table (tests/unit/test-sendmail-parse.c).
 *
 * Invariants: nothing reads past the given length; every address handed
 * to the callback is non-empty, has no surrounding white space, no
 * comment and no angle brackets, and is at most SM_ADDR_MAX - 1 bytes
 * (longer ones are reported as errors, not cut).
 */
#ifndef PETREL_SENDMAIL_PARSE_H
#define PETREL_SENDMAIL_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define SM_ADDR_MAX 1024

/* Called once per address in list order; return non-zero to stop. */
typedef int sm_addr_fn(void *arg, const char *addr);

/*
 * sm_addr_list - the addresses of an address list: "a@x, B <b@y>",
 * "(comment) c@z", "group: d@w, e@v;", "\"q, r\"@s", "<@route:f@u>".
 * Returns the number of addresses, or -1 when the list is malformed
 * (an unclosed quote, comment or angle bracket, an address too long) or
 * the callback stopped it.
 */
int sm_addr_list(const char *s, size_t n, sm_addr_fn *fn, void *arg);

/*
 * sm_field_is - whether the header line (the first line of a field:
 * "Name: value") names field `name` (case-insensitive); *value gets the
 * offset of the value, after the colon.
 */
bool sm_field_is(const char *line, size_t n, const char *name, size_t *value);

/*
 * sm_field_end - the length of the header field that starts at s: its
 * first line and every continuation line (one starting with SP or HTAB),
 * each with its line end.  n when the field runs to the end of s.
 */
size_t sm_field_end(const char *s, size_t n);

#endif
