/*
 * maildir_copy.h - the byte transform from a queued message to a maildir
 * file, with no I/O: pure, so it can be unit-tested and fuzzed alone.
 *
 * The spool holds the message exactly as received (CRLF line ends, dot
 * stuffing already undone by the SMTP server, so there is no dot handling
 * left to do here).  A maildir file has LF line ends (the convention
 * Dovecot reads).  The transform is:
 *   CR LF            -> LF
 *   CR not before LF -> CR, kept (a bare CR is data, not a line end)
 *   CR at the end    -> CR, kept (written by maildir_copy_end)
 *   every other byte -> itself (LF, NUL, 8-bit: unchanged)
 *
 * The message arrives in blocks of any size.  A CR at the end of a block
 * cannot be decided until the next byte is seen, so it is held back in
 * the state and written with the next block (or by maildir_copy_end):
 * one block of n bytes can therefore produce up to n + 1 bytes, which is
 * what MAILDIR_COPY_OUT_MAX says and what every caller must reserve.
 *
 * Invariants (what a test or fuzz harness may check):
 *   - the output never exceeds MAILDIR_COPY_OUT_MAX(n) per call, and a
 *     call with a smaller out_size writes nothing and fails;
 *   - the concatenated output (all blocks, then maildir_copy_end) depends
 *     only on the concatenated input, never on how it was split;
 *   - the output length is the input length minus the number of CR LF
 *     pairs in the input, and it holds no CR LF pair unless the input
 *     held CR CR LF (the first CR of it stays);
 *   - the state is one flag: a maildir_copy may be copied or reset with
 *     maildir_copy_init at any time; nothing is allocated.
 *
 * Use:
 *     struct maildir_copy c;
 *     maildir_copy_init(&c);
 *     for each block in[0..n):
 *         char out[MAILDIR_COPY_OUT_MAX(sizeof in)];
 *         size_t k;
 *         if (maildir_copy_block(&c, in, n, out, sizeof out, &k) < 0) ...
 *         write(out, k)
 *     maildir_copy_end(&c, out, sizeof out, &k); write(out, k)
 */
#ifndef PETREL_MAILDIR_COPY_H
#define PETREL_MAILDIR_COPY_H

#include <stddef.h>

/* The most bytes one maildir_copy_block() of n input bytes writes. */
#define MAILDIR_COPY_OUT_MAX(n) ((n) + 1)
/* The most bytes maildir_copy_end() writes. */
#define MAILDIR_COPY_END_MAX 1

struct maildir_copy {
	int cr;     /* 1: a CR ended the previous block and is not written yet */
};

void maildir_copy_init(struct maildir_copy *c);

/* Transform in[0..n) into out, which has out_size bytes; *out_len gets
 * the number written.  Returns 0, or -1 (err set, nothing written, state
 * unchanged) when out_size < MAILDIR_COPY_OUT_MAX(n).  in and out must
 * not overlap.  n may be 0. */
int maildir_copy_block(struct maildir_copy *c, const char *in, size_t n, char *out,
                       size_t out_size, size_t *out_len, const char **err)
	__attribute__((warn_unused_result));

/* The message is complete: write a CR still held back (0 or 1 byte) and
 * reset the state.  Returns 0, or -1 (err set) when out_size is smaller
 * than MAILDIR_COPY_END_MAX. */
int maildir_copy_end(struct maildir_copy *c, char *out, size_t out_size, size_t *out_len,
                     const char **err)
	__attribute__((warn_unused_result));

#endif
