/*
 * mime_int.h - what mime.c (structure) uses of mime_decode.c (decoders).
 * Internal to the MIME parser; filters use mime.h through the host.
 */
#ifndef PETREL_MIME_INT_H
#define PETREL_MIME_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "mem.h"

bool mime_is_space(char c);
char mime_lower(char c);
bool mime_is_token(char c);
const char *mime_bstr(const struct buf *b);              /* data or "" */
void mime_add(struct buf *out, const char *s, size_t n);
void mime_add_utf8_clean(struct buf *out, const char *s, size_t n);
/* Lenient decoders: out may be NULL (only check); nonzero/true = malformed. */
unsigned mime_b64_decode(const char *s, size_t n, struct buf *out);
bool mime_qp_decode(const char *s, size_t n, struct buf *out);
bool mime_empty_line(const char *p, size_t n);
size_t mime_skip_cfws(const char *v, size_t n, size_t i);
int mime_param_n(const char *v, size_t n, const char *name, struct buf *out);

#endif
