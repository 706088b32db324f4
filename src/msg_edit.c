/*
 * msg_edit.c - the message as filters see it, and its rewriting (see
 * msg_edit.h).
 */
#include "msg_edit.h"
#include "fileio.h"
#include "log.h"
#include "mime.h"
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct hdr {
	char *name;
	char *value;        /* unfolded */
	char *decoded;      /* RFC 2047 decoded, lazily */
	size_t start, end;  /* the field's bytes in the message, CRLF included */
};

enum change_op { CH_ADD, CH_PREPEND, CH_CHANGE, CH_REMOVE };

struct change {
	enum change_op op;
	char *name;
	int n;
	char *value;
};

struct petrel_part {
	struct petrel_txn *t;
	struct mime_part *mp;
	struct buf body;
	bool decoded;
};

/* Messages up to this size are read into memory; larger ones are mapped
 * (munmap in a threaded process costs a TLB shootdown on every CPU). */
#define READ_MAX (1024 * 1024)

struct msg_view {
	char *map;
	size_t map_len;
	bool mapped;            /* map came from mmap (else from malloc) */
	const char *msg;        /* the message inside the map */
	size_t len;
	struct hdr *hdrs;
	int nhdrs;
	size_t body_start;      /* first byte after the header fields */
	struct mime_message mime;
	struct petrel_part *parts;
	struct change *changes;
	int nchanges;
};

static void index_headers(struct msg_view *v)
{
	const char *m = v->msg;
	size_t pos = 0, len = v->len;
	int cap = 0;
	while (pos < len) {
		const char *eol = memchr(m + pos, '\n', len - pos);
		size_t end = eol ? (size_t)(eol - m) + 1 : len;
		size_t linelen = end - pos;
		if (linelen <= 2 && (m[pos] == '\r' || m[pos] == '\n'))
			break;                          /* the empty line */
		if (m[pos] == ' ' || m[pos] == '\t') {
			/* continuation: fold into the previous field */
			if (v->nhdrs) {
				struct hdr *h = &v->hdrs[v->nhdrs - 1];
				size_t n = linelen;
				while (n && (m[pos + n - 1] == '\n' || m[pos + n - 1] == '\r'))
					n--;
				struct buf b = {0};
				buf_adds(&b, h->value);
				buf_add(&b, m + pos, n);
				free(h->value);
				h->value = b.data ? b.data : xstrdup("");
				h->end = end;
			}
			pos = end;
			continue;
		}
		const char *colon = memchr(m + pos, ':', linelen);
		if (!colon)
			break;                          /* not a header: the body starts */
		if (v->nhdrs == cap) {
			cap = cap ? cap * 2 : 32;
			v->hdrs = xrealloc(v->hdrs, (size_t)cap * sizeof *v->hdrs);
		}
		struct hdr *h = &v->hdrs[v->nhdrs++];
		size_t nl = (size_t)(colon - (m + pos));
		while (nl && (m[pos + nl - 1] == ' ' || m[pos + nl - 1] == '\t'))
			nl--;
		h->name = xstrndup(m + pos, nl);
		const char *val = colon + 1;
		size_t vl = (size_t)(m + end - val);
		while (vl && (val[vl - 1] == '\n' || val[vl - 1] == '\r'))
			vl--;
		h->value = xstrndup(val, vl);
		h->decoded = NULL;
		h->start = pos;
		h->end = end;
		pos = end;
	}
	v->body_start = pos;
	/* trim the unfolded values */
	for (int i = 0; i < v->nhdrs; i++) {
		char *s = v->hdrs[i].value, *p = s;
		while (*p == ' ' || *p == '\t')
			p++;
		size_t n = strlen(p);
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		memmove(s, p, n);
		s[n] = 0;
	}
}

int msg_load(struct petrel_txn *t, const char **err)
{
	if (t->msg)
		return 0;
	/* written sequentially: the offset is the end (a reused slot may
	 * hold old bytes past it) */
	off_t end = lseek(t->fd, 0, SEEK_CUR);
	if (end < 0) {
		*err = strerror(errno);
		return -1;
	}
	struct msg_view *v = xcalloc(1, sizeof *v);
	v->map_len = (size_t)end;
	if (v->map_len > READ_MAX) {
		v->map = mmap(NULL, v->map_len, PROT_READ, MAP_SHARED, t->fd, 0);
		if (v->map == MAP_FAILED) {
			*err = strerror(errno);
			free(v);
			return -1;
		}
		v->mapped = true;
	} else if (v->map_len) {
		v->map = xmalloc(v->map_len);
		ssize_t got = pread_all(t->fd, v->map, v->map_len, 0);
		if (got != (ssize_t)v->map_len) {
			*err = got < 0 ? strerror(errno) : "queue file shorter than written";
			free(v->map);
			free(v);
			return -1;
		}
	}
	size_t off = (size_t)t->qm->msg_off;
	v->msg = v->map + (off <= v->map_len ? off : v->map_len);
	v->len = off <= v->map_len ? v->map_len - off : 0;
	index_headers(v);
	mime_parse(v->msg, v->len, &v->mime);
	v->parts = xcalloc((size_t)v->mime.nparts + 1, sizeof *v->parts);
	for (int i = 0; i < v->mime.nparts; i++)
		v->parts[i] = (struct petrel_part){ .t = t, .mp = &v->mime.parts[i] };
	t->msg = v;
	return 0;
}

void msg_free(struct petrel_txn *t)
{
	struct msg_view *v = t->msg;
	if (!v)
		return;
	if (v->mapped)
		munmap(v->map, v->map_len);
	else
		free(v->map);
	for (int i = 0; i < v->nhdrs; i++) {
		free(v->hdrs[i].name);
		free(v->hdrs[i].value);
		free(v->hdrs[i].decoded);
	}
	free(v->hdrs);
	for (int i = 0; i < v->mime.nparts; i++)
		buf_free(&v->parts[i].body);
	free(v->parts);
	mime_message_free(&v->mime);
	for (int i = 0; i < v->nchanges; i++) {
		free(v->changes[i].name);
		free(v->changes[i].value);
	}
	free(v->changes);
	free(v);
	t->msg = NULL;
}

int msg_nparts(struct petrel_txn *t)
{
	return t->msg ? t->msg->mime.nparts : 0;
}

struct petrel_part *msg_part(struct petrel_txn *t, int i)
{
	return &t->msg->parts[i];
}

bool msg_changed(struct petrel_txn *t)
{
	return t->env_dirty || (t->msg && t->msg->nchanges);
}

/* --- headers --- */

int msg_header_count(struct petrel_txn *t)
{
	return t->msg ? t->msg->nhdrs : 0;
}

static struct hdr *hdr_at(struct petrel_txn *t, int i)
{
	return t->msg && i >= 0 && i < t->msg->nhdrs ? &t->msg->hdrs[i] : NULL;
}

const char *msg_header_name(struct petrel_txn *t, int i)
{
	struct hdr *h = hdr_at(t, i);
	return h ? h->name : NULL;
}

const char *msg_header_value(struct petrel_txn *t, int i)
{
	struct hdr *h = hdr_at(t, i);
	return h ? h->value : NULL;
}

const char *msg_header_decoded(struct petrel_txn *t, int i)
{
	struct hdr *h = hdr_at(t, i);
	if (!h)
		return NULL;
	if (!h->decoded) {
		struct buf b = {0};
		mime_decode_words(h->value, strlen(h->value), &b);
		h->decoded = b.data ? b.data : xstrdup("");
	}
	return h->decoded;
}

static bool name_ok(const char *n)
{
	if (!n || !*n || strlen(n) > 200)
		return false;
	for (; *n; n++)
		if ((unsigned char)*n <= 32 || (unsigned char)*n >= 127 || *n == ':')
			return false;
	return true;
}

static bool value_ok(const char *v)
{
	if (!v || strlen(v) > 8000)
		return false;
	for (; *v; v++)
		if (*v == '\r' || *v == '\n' || *v == 0)
			return false;
	return true;
}

static int add_change(struct petrel_txn *t, enum change_op op, const char *name, int n,
                      const char *value)
{
	struct msg_view *v = t->msg;
	if (!v || !name_ok(name) || (value && !value_ok(value)))
		return -1;
	v->changes = xrealloc(v->changes, (size_t)(v->nchanges + 1) * sizeof *v->changes);
	v->changes[v->nchanges++] = (struct change){ .op = op, .name = xstrdup(name), .n = n,
	                                             .value = value ? xstrdup(value) : NULL };
	return 0;
}

int msg_header_add(struct petrel_txn *t, const char *name, const char *value, int prepend)
{
	return value ? add_change(t, prepend ? CH_PREPEND : CH_ADD, name, 0, value) : -1;
}

int msg_header_change(struct petrel_txn *t, const char *name, int n, const char *value)
{
	return value ? add_change(t, CH_CHANGE, name, n, value) : -1;
}

int msg_header_remove(struct petrel_txn *t, const char *name, int n)
{
	return add_change(t, CH_REMOVE, name, n, NULL);
}

/* --- rewriting --- */

static void write_field(struct buf *b, const char *name, const char *value)
{
	buf_addf(b, "%s: %s\r\n", name, value);
}

static void build_headers(struct msg_view *v, struct buf *b)
{
	for (int c = 0; c < v->nchanges; c++)
		if (v->changes[c].op == CH_PREPEND)
			write_field(b, v->changes[c].name, v->changes[c].value);
	int *seen = xcalloc((size_t)v->nhdrs + 1, sizeof *seen);
	for (int i = 0; i < v->nhdrs; i++) {
		struct hdr *h = &v->hdrs[i];
		int occ = 0;
		for (int k = 0; k < i; k++)
			occ += !strcasecmp(v->hdrs[k].name, h->name);
		const char *value = NULL;
		bool removed = false;
		for (int c = 0; c < v->nchanges; c++) {
			struct change *ch = &v->changes[c];
			if ((ch->op != CH_CHANGE && ch->op != CH_REMOVE) || strcasecmp(ch->name, h->name))
				continue;
			if (ch->n >= 0 && ch->n != occ)
				continue;
			if (ch->op == CH_REMOVE)
				removed = true;
			else
				value = ch->value;
		}
		if (removed)
			continue;
		if (value)
			write_field(b, h->name, value);
		else
			buf_add(b, v->msg + h->start, h->end - h->start);
	}
	free(seen);
	for (int c = 0; c < v->nchanges; c++)
		if (v->changes[c].op == CH_ADD)
			write_field(b, v->changes[c].name, v->changes[c].value);
}

int msg_rewrite(struct petrel_txn *t, struct spool *sp, const char **err)
{
	if (!msg_changed(t))
		return 0;
	struct buf b = {0};
	spool_envelope(&b, t->qm);
	if (t->msg) {
		build_headers(t->msg, &b);
	} else {
		*err = "message not loaded";
		buf_free(&b);
		return -1;
	}
	const char *body = t->msg->msg + t->msg->body_start;
	size_t body_len = t->msg->len - t->msg->body_start;
	int old_slot;
	int fd = spool_replace(sp, t->qm, &old_slot, b.data, b.len, body, body_len, err);
	uint64_t newsize = b.len - (size_t)t->qm->msg_off + body_len;
	buf_free(&b);
	if (fd < 0)
		return -1;
	msg_free(t);      /* body pointed into the old file: unmap before it goes */
	spool_abort(sp, old_slot, t->fd);
	t->fd = fd;
	t->size = newsize;
	return 0;
}

/* --- parts --- */

int part_index(struct petrel_part *p) { return p->mp->index; }
int part_depth(struct petrel_part *p) { return p->mp->depth; }
int part_is_multipart(struct petrel_part *p) { return p->mp->multipart; }
const char *part_content_type(struct petrel_part *p) { return p->mp->content_type; }
const char *part_filename(struct petrel_part *p) { return p->mp->filename; }
const char *part_disposition(struct petrel_part *p) { return p->mp->disposition; }
const char *part_charset(struct petrel_part *p) { return p->mp->charset; }

unsigned part_flags(struct petrel_part *p)
{
	if (!p->decoded)
		(void)part_body(p, NULL);
	return p->mp->flags;
}

const char *part_body(struct petrel_part *p, size_t *len)
{
	if (!p->decoded) {
		unsigned flags = 0;
		mime_decode_body(p->mp, &p->body, &flags);
		p->mp->flags |= flags;
		p->decoded = true;
	}
	if (len)
		*len = p->body.len;
	return p->body.data ? p->body.data : "";
}
