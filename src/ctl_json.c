/*
 * ctl_json.c - JSON strings for the control socket: the daemon's
 * writer and petrelctl's reader (see ctl_json.h).
 *
 * Recursive descent over one line; every allocation goes through mem.c
 * (never NULL).  \u escapes become UTF-8 (surrogate pairs joined, a lone
 * surrogate becomes U+FFFD).
 */
#include "ctl_json.h"
#include "mem.h"

#include <stdlib.h>
#include <string.h>

struct in {
	const char *p, *end;
};

static void ws(struct in *in)
{
	while (in->p < in->end && (*in->p == ' ' || *in->p == '\t' || *in->p == '\r' || *in->p == '\n'))
		in->p++;
}

static int hex4(struct in *in, unsigned *out)
{
	if (in->end - in->p < 4)
		return -1;
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = *in->p++;
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static void put_utf8(struct buf *b, unsigned cp)
{
	unsigned char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | cp >> 6);
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | cp >> 12);
		u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | cp >> 18);
		u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	buf_add(b, u, n);
}

static char *string(struct in *in)
{
	if (in->p >= in->end || *in->p != '"')
		return NULL;
	in->p++;
	struct buf b = {0};
	buf_reserve(&b, 1);
	while (in->p < in->end && *in->p != '"') {
		char c = *in->p++;
		if ((unsigned char)c < 0x20)
			goto bad;
		if (c != '\\') {
			buf_add(&b, &c, 1);
			continue;
		}
		if (in->p >= in->end)
			goto bad;
		c = *in->p++;
		const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t", *k = strchr(from, c);
		if (c && k) {
			buf_add(&b, &to[k - from], 1);
			continue;
		}
		unsigned cp, lo;
		if (c != 'u' || hex4(in, &cp) < 0)
			goto bad;
		if (cp >= 0xd800 && cp < 0xdc00 && in->end - in->p >= 6 && in->p[0] == '\\' &&
		    in->p[1] == 'u') {
			struct in save = *in;
			in->p += 2;
			if (hex4(in, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000)
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			else
				*in = save;
		}
		if (cp >= 0xd800 && cp < 0xe000)
			cp = 0xfffd;
		put_utf8(&b, cp);
	}
	if (in->p >= in->end)
		goto bad;
	in->p++;
	return b.data;
bad:
	buf_free(&b);
	return NULL;
}

static void clear(struct ctl_json *v);

static int value(struct in *in, struct ctl_json *v, int depth)
{
	memset(v, 0, sizeof *v);
	ws(in);
	if (in->p >= in->end || depth > CTL_JSON_DEPTH)
		return -1;
	char c = *in->p;
	if (c == '"') {
		v->t = CJ_STR;
		return (v->str = string(in)) ? 0 : -1;
	}
	if (c == '{' || c == '[') {
		bool obj = c == '{';
		v->t = obj ? CJ_OBJ : CJ_ARR;
		in->p++;
		ws(in);
		if (in->p < in->end && *in->p == (obj ? '}' : ']')) {
			in->p++;
			return 0;
		}
		for (;;) {
			char *key = NULL;
			if (obj) {
				ws(in);
				if (!(key = string(in)))
					return -1;
				ws(in);
				if (in->p >= in->end || *in->p++ != ':') {
					free(key);
					return -1;
				}
			}
			v->items = xrealloc(v->items, (size_t)(v->n + 1) * sizeof *v->items);
			if (obj)
				v->keys = xrealloc(v->keys, (size_t)(v->n + 1) * sizeof *v->keys);
			if (obj)
				v->keys[v->n] = key;
			int r = value(in, &v->items[v->n], depth + 1);
			v->n++;
			if (r < 0)
				return -1;
			ws(in);
			if (in->p >= in->end)
				return -1;
			c = *in->p++;
			if (c == ',')
				continue;
			return c == (obj ? '}' : ']') ? 0 : -1;
		}
	}
	static const struct { const char *w; enum ctl_json_type t; bool b; } words[] = {
		{ "true", CJ_BOOL, true }, { "false", CJ_BOOL, false }, { "null", CJ_NULL, false },
	};
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
		size_t n = strlen(words[i].w);
		if ((size_t)(in->end - in->p) >= n && !memcmp(in->p, words[i].w, n)) {
			in->p += n;
			v->t = words[i].t;
			v->b = words[i].b;
			return 0;
		}
	}
	char tmp[64];
	size_t n = 0;
	while (in->p + n < in->end && n < sizeof tmp - 1 && strchr("+-0123456789.eE", in->p[n]))
		n++;
	if (!n)
		return -1;
	memcpy(tmp, in->p, n);
	tmp[n] = 0;
	char *e;
	v->t = CJ_NUM;
	v->num = strtod(tmp, &e);
	if (*e)
		return -1;
	in->p += n;
	return 0;
}

static void clear(struct ctl_json *v)
{
	for (int i = 0; i < v->n; i++) {
		clear(&v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->str);
}

/* --- writing --- */

/* Length of the valid UTF-8 sequence at p (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
	if (p[0] >= 0xf5 || !len || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((len == 3 && p[0] == 0xe0 && p[1] < 0xa0) || (len == 4 && p[0] == 0xf0 && p[1] < 0x90) ||
	    (len == 4 && p[0] == 0xf4 && p[1] >= 0x90) || (len == 3 && p[0] == 0xed && p[1] >= 0xa0))
		return 0;
	return len;
}

void ctl_json_quote(struct buf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	buf_add(b, "\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned char c = p[i];
		if (c == '"' || c == '\\') {
			buf_add(b, "\\", 1);
			buf_add(b, &p[i++], 1);
		} else if (c < 0x20 || c == 0x7f) {
			buf_addf(b, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			buf_add(b, &p[i++], 1);
		} else {
			size_t k = utf8_len(p + i, n - i);
			if (k) {
				buf_add(b, p + i, k);
				i += k;
			} else {
				buf_adds(b, "\\ufffd");
				i++;
			}
		}
	}
	buf_add(b, "\"", 1);
}

struct ctl_json *ctl_json_parse(const char *s, size_t len)
{
	struct in in = { s, s + len };
	struct ctl_json *v = xcalloc(1, sizeof *v);
	int r = value(&in, v, 0);
	ws(&in);
	if (r < 0 || in.p != in.end)
		ctl_json_free(&v);
	return v;
}

void ctl_json_free(struct ctl_json **vp)
{
	if (!*vp)
		return;
	clear(*vp);
	xfree(vp);
}

const struct ctl_json *ctl_json_get(const struct ctl_json *v, const char *key)
{
	if (!v || v->t != CJ_OBJ)
		return NULL;
	for (int i = 0; i < v->n; i++)
		if (!strcmp(v->keys[i], key))
			return &v->items[i];
	return NULL;
}

const char *ctl_json_str(const struct ctl_json *v, const char *key)
{
	const struct ctl_json *m = ctl_json_get(v, key);
	return m && m->t == CJ_STR ? m->str : "";
}

double ctl_json_num(const struct ctl_json *v, const char *key)
{
	const struct ctl_json *m = ctl_json_get(v, key);
	return m && m->t == CJ_NUM ? m->num : 0;
}

bool ctl_json_bool(const struct ctl_json *v, const char *key)
{
	const struct ctl_json *m = ctl_json_get(v, key);
	return m && m->t == CJ_BOOL && m->b;
}
