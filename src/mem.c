/*
 * mem.c - allocation wrappers and struct buf (see mem.h).
 */
#include "mem.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
	log_fatal("out of memory allocating %zu bytes", n);
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	struct buf b = {0};
	va_list ap;
	va_start(ap, fmt);
	buf_vaddf(&b, fmt, ap);
	va_end(ap);
	if (!b.data)
		return xstrdup("");
	return b.data;
}

/* Move the bytes left back to the start of the allocation. */
static void buf_compact(struct buf *b)
{
	if (!b->off)
		return;
	char *base = b->data - b->off;
	memmove(base, b->data, b->len + 1);
	b->data = base;
	b->cap += b->off;
	b->off = 0;
}

void buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	buf_compact(b);
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void buf_add(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
}

void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void buf_add_line(struct buf *b, const char *s)
{
	size_t n = strlen(s);
	buf_reserve(b, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		b->data[b->len++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	b->data[b->len] = 0;
}

void buf_vaddf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vaddf(b, fmt, ap);
	va_end(ap);
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_reset(b);
		return;
	}
	b->data += n;
	b->off += n;
	b->cap -= n;
	b->len -= n;
	b->data[b->len] = 0;
	if (b->off >= b->len)      /* moving back costs no more than was consumed */
		buf_compact(b);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (!b->data)
		return;
	b->data -= b->off;
	b->cap += b->off;
	b->off = 0;
	b->data[0] = 0;
}

void buf_free(struct buf *b)
{
	if (b->data)
		free(b->data - b->off);
	*b = (struct buf){ 0 };
}
