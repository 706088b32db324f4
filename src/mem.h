/*
 * mem.h - allocation that never returns NULL, and a growable byte buffer.
 *
 * Out of memory is an environment failure: the wrappers log and exit, so
 * no caller carries a NULL check.  struct buf owns its bytes; buf_free()
 * releases them and leaves the buf empty and reusable.
 */
#ifndef PETREL_MEM_H
#define PETREL_MEM_H

#include <stddef.h>
#include <stdarg.h>

void *xmalloc(size_t n) __attribute__((malloc, returns_nonnull));
void *xcalloc(size_t n, size_t size) __attribute__((malloc, returns_nonnull));
void *xrealloc(void *p, size_t n) __attribute__((returns_nonnull));
char *xstrdup(const char *s) __attribute__((malloc, returns_nonnull));
char *xstrndup(const char *s, size_t n) __attribute__((malloc, returns_nonnull));
char *xasprintf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), malloc, returns_nonnull));

/* Free *pp and clear it. */
#define xfree(pp) do { free(*(pp)); *(pp) = NULL; } while (0)

struct buf {
	char *data;     /* always NUL-terminated when len > 0 or after buf_* */
	size_t len;
	size_t cap;     /* bytes usable from data on */
	size_t off;     /* consumed bytes before data (the allocation starts at data - off) */
};

void buf_reserve(struct buf *b, size_t extra);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_adds(struct buf *b, const char *s);
/* s as one line of a header field or report: CR, LF, TAB and the other
 * C0 controls and DEL become spaces, so text that is not ours (a sender,
 * a transport's reason) cannot end a field or start another */
void buf_add_line(struct buf *b, const char *s);
void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vaddf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drop n bytes from the front, in amortised O(n): the bytes left move
 * back only once as many were consumed.  A buf consumed from is freed
 * with buf_free, never by free(b->data). */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);              /* len = 0, keep memory */
void buf_free(struct buf *b);               /* release memory */

#endif
