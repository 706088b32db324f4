/*
 * fuzz_maildir_copy.c - libFuzzer harness for the maildir copy, the CRLF
 * -> LF transform of modules/maildir/maildir_copy.c (a pure function: no
 * I/O), against the invariants its header states.
 *
 * Input: the first byte (if any) seeds the block sizes, the rest is the
 * message.  The message is copied twice: in one block, and in blocks of
 * sizes drawn from the seed (1 byte to 70,000, the size that broke the
 * old copy_message(), with sizes 1 and 2 often so a CR lands on every
 * boundary).  Every output buffer is a heap block of exactly
 * MAILDIR_COPY_OUT_MAX(n) bytes, so writing one byte more is an ASan
 * report.  Checked:
 *   - each call writes at most MAILDIR_COPY_OUT_MAX(n), the end at most
 *     MAILDIR_COPY_END_MAX, and a call with one byte less fails and
 *     writes nothing;
 *   - both copies give the same bytes (the split does not matter);
 *   - the output is the input with each CR LF made LF (checked against
 *     a byte-by-byte model here), so its length is the input's minus the
 *     CR LF pairs.
 */
#include "fuzz_common.h"
#include "maildir_copy.h"

#include <stdbool.h>

/* A small deterministic generator for the block sizes. */
static uint32_t next_rand(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static size_t block_size(uint32_t *s)
{
	switch (next_rand(s) % 4) {
	case 0: return 1;
	case 1: return 2;
	case 2: return 1 + next_rand(s) % 64;
	default: return 1 + next_rand(s) % 70000;
	}
}

/* Copy in[0..n) in blocks; append to out (size n + 1 is always enough). */
static size_t copy_blocks(const char *in, size_t n, uint32_t seed, bool one_block, char *out)
{
	struct maildir_copy c;
	maildir_copy_init(&c);
	size_t total = 0, pos = 0;
	const char *err;
	while (pos < n) {
		size_t len = one_block ? n - pos : block_size(&seed);
		if (len > n - pos)
			len = n - pos;
		size_t cap = MAILDIR_COPY_OUT_MAX(len);
		/* one byte too small: refused, nothing written */
		char *small = malloc(cap - 1 ? cap - 1 : 1);
		size_t k = 12345;
		struct maildir_copy before = c;
		if (maildir_copy_block(&c, in + pos, len, small, cap - 1, &k, &err) == 0)
			fuzz_fail("maildir_copy_block accepted an output buffer of n bytes");
		if (k != 0 || c.cr != before.cr)
			fuzz_fail("a refused maildir_copy_block wrote or changed the state");
		free(small);
		char *buf = malloc(cap);
		if (maildir_copy_block(&c, in + pos, len, buf, cap, &k, &err) < 0)
			fuzz_fail("maildir_copy_block refused n + 1 bytes: %s", err);
		if (k > cap)
			fuzz_fail("maildir_copy_block wrote %zu bytes for %zu", k, len);
		memcpy(out + total, buf, k);
		total += k;
		free(buf);
		pos += len;
	}
	char *end = malloc(MAILDIR_COPY_END_MAX);
	size_t k = 0;
	if (maildir_copy_end(&c, end, MAILDIR_COPY_END_MAX, &k, &err) < 0)
		fuzz_fail("maildir_copy_end refused its buffer: %s", err);
	if (k > MAILDIR_COPY_END_MAX)
		fuzz_fail("maildir_copy_end wrote %zu bytes", k);
	memcpy(out + total, end, k);
	total += k;
	free(end);
	return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint32_t seed = data[0];
	const char *in = (const char *)data + 1;
	size_t n = size - 1;

	/* the model: CR LF -> LF, every other byte kept */
	char *want = malloc(n + 1);
	size_t wl = 0, pairs = 0;
	for (size_t i = 0; i < n; i++) {
		if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n') {
			pairs++;
			continue;
		}
		want[wl++] = in[i];
	}
	if (wl != n - pairs)
		fuzz_fail("model length");

	char *a = malloc(n + 2), *b = malloc(n + 2);
	size_t la = copy_blocks(in, n, seed, true, a);
	size_t lb = copy_blocks(in, n, seed, false, b);
	if (la != wl || memcmp(a, want, wl))
		fuzz_fail("one-block copy differs from CRLF -> LF (%zu bytes, want %zu)", la, wl);
	if (lb != la || memcmp(a, b, la))
		fuzz_fail("the copy depends on how the message is split (%zu vs %zu bytes)", lb, la);
	free(a);
	free(b);
	free(want);
	return 0;
}
