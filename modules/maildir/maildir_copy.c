/*
 * maildir_copy.c - CRLF -> LF for maildir delivery, block by block, no I/O.
 * The rules and the invariants are in maildir_copy.h.
 *
 * The bound: a held-back CR from the previous block is written before the
 * first byte of this one when that byte is not LF, so a block of n bytes
 * yields at most n + 1 (held CR + every byte but a trailing CR, which is
 * held again).  The caller's buffer is checked against that bound before
 * anything is written.
 */
#include "maildir_copy.h"

#include <string.h>

void maildir_copy_init(struct maildir_copy *c)
{
	*c = (struct maildir_copy){ .cr = 0 };
}

int maildir_copy_block(struct maildir_copy *c, const char *in, size_t n, char *out,
                       size_t out_size, size_t *out_len, const char **err)
{
	*out_len = 0;
	if (n >= (size_t)-1 || out_size < MAILDIR_COPY_OUT_MAX(n)) {
		*err = "output buffer smaller than input + 1";
		return -1;
	}
	size_t k = 0;
	int cr = c->cr;
	for (size_t i = 0; i < n; i++) {
		char ch = in[i];
		if (cr) {
			cr = 0;
			if (ch != '\n')
				out[k++] = '\r';    /* a bare CR: kept */
		}
		if (ch == '\r') {
			cr = 1;                 /* decided by the next byte */
			continue;
		}
		out[k++] = ch;
	}
	c->cr = cr;
	*out_len = k;
	return 0;
}

int maildir_copy_end(struct maildir_copy *c, char *out, size_t out_size, size_t *out_len,
                     const char **err)
{
	*out_len = 0;
	if (out_size < MAILDIR_COPY_END_MAX) {
		*err = "output buffer smaller than 1 byte";
		return -1;
	}
	if (c->cr)
		out[(*out_len)++] = '\r';
	maildir_copy_init(c);
	return 0;
}
