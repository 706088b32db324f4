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
	size_t value_start; /* just after the colon */
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
	int nchanges, changes_cap;
};

/* Append the unfolded value m[from..end) to b: every line's trailing CR
 * and LF dropped, the leading white space of continuation lines kept, the
 * whole trimmed of surrounding SP and HT.  One pass over the field. */
static char *unfold_value(const char *m, size_t from, size_t end)
{
	struct buf b = {0};
	buf_reserve(&b, end - from);
	size_t pos = from;
	while (pos < end) {
		const char *eol = memchr(m + pos, '\n', end - pos);
		size_t next = eol ? (size_t)(eol - m) + 1 : end, n = next - pos;
		while (n && (m[pos + n - 1] == '\n' || m[pos + n - 1] == '\r'))
			n--;
		buf_add(&b, m + pos, n);
		pos = next;
	}
	size_t s = 0, n = b.len;
	while (s < n && (b.data[s] == ' ' || b.data[s] == '\t'))
		s++;
	while (n > s && (b.data[n - 1] == ' ' || b.data[n - 1] == '\t'))
		n--;
	memmove(b.data, b.data + s, n - s);
	b.data[n - s] = 0;
	return b.data;
}

/*
 * The top-level header fields, each examined once: a field's lines are
 * only delimited here (its continuation lines move h->end), and its value
 * is unfolded once when the field is complete, so the work is linear in
 * the header section whatever its shape (smtp_data.c bounds the section
 * itself: header_size_limit, header_count_limit).
 */
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
			/* continuation: part of the previous field; before the first
			 * field it belongs to none, and like any line that is not a
			 * field it starts the body (kept, never dropped) */
			if (!v->nhdrs)
				break;
			v->hdrs[v->nhdrs - 1].end = end;
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
		*h = (struct hdr){
			.name = xstrndup(m + pos, nl),
			.value_start = (size_t)(colon + 1 - m),
			.start = pos,
			.end = end,
		};
		pos = end;
	}
	v->body_start = pos;
	for (int i = 0; i < v->nhdrs; i++)
		v->hdrs[i].value = unfold_value(m, v->hdrs[i].value_start, v->hdrs[i].end);
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

int msg_part_over_limit(struct petrel_txn *t, uint64_t field_max, int fields_max,
                        const char **reply)
{
	const struct mime_message *m = t->msg ? &t->msg->mime : NULL;
	for (int i = 1; m && i < m->nparts; i++) {      /* not 0: see msg_edit.h */
		if (m->parts[i].longest_field > field_max) {
			*reply = "552 5.3.4 Error: MIME part header field too large";
			return i;
		}
		if (m->parts[i].nfields > fields_max) {
			*reply = "552 5.3.4 Error: too many MIME part header fields";
			return i;
		}
	}
	return -1;
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
	if (v->nchanges == v->changes_cap) {        /* doubling: one change per header stays linear */
		v->changes_cap = v->changes_cap ? 2 * v->changes_cap : 16;
		v->changes = xrealloc(v->changes, (size_t)v->changes_cap * sizeof *v->changes);
	}
	v->changes[v->nchanges++] = (struct change){ .op = op, .name = xstrdup(name), .n = n < 0 ? -1 : n,
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

/*
 * Which change applies to which header, without comparing every header
 * with every change (a rule that removes each header makes as many
 * changes as there are headers).  Headers and changes are sorted by name
 * (ties by position), so each name's headers meet that name's changes in
 * one merge: O((headers + changes) log(headers + changes)) whatever the
 * names.  Sorting, not hashing: the names are the peer's to choose.
 */
static int cmp_hdr(const void *a, const void *b, void *arg)
{
	const struct msg_view *v = arg;
	int i = *(const int *)a, j = *(const int *)b;
	int c = strcasecmp(v->hdrs[i].name, v->hdrs[j].name);
	return c ? c : (i > j) - (i < j);
}

static int cmp_change(const void *a, const void *b, void *arg)
{
	const struct msg_view *v = arg;
	int i = *(const int *)a, j = *(const int *)b;
	const struct change *x = &v->changes[i], *y = &v->changes[j];
	int c = strcasecmp(x->name, y->name);
	if (c)
		return c;
	if (x->n != y->n)
		return (x->n > y->n) - (x->n < y->n);     /* -1 (all of that name) first */
	return (i > j) - (i < j);
}

/* For every header: removed, or the index of the change giving its new
 * value (-1: unchanged).  The last matching change wins, a remove always. */
static void match_changes(const struct msg_view *v, bool *removed, int *value_of)
{
	int *hs = xmalloc(((size_t)v->nhdrs + 1) * sizeof *hs);
	int *cs = xmalloc(((size_t)v->nchanges + 1) * sizeof *cs);
	int nh = v->nhdrs, nc = 0;
	for (int i = 0; i < nh; i++) {
		hs[i] = i;
		removed[i] = false;
		value_of[i] = -1;
	}
	for (int c = 0; c < v->nchanges; c++)
		if (v->changes[c].op == CH_CHANGE || v->changes[c].op == CH_REMOVE)
			cs[nc++] = c;
	qsort_r(hs, (size_t)nh, sizeof *hs, cmp_hdr, (void *)v);
	qsort_r(cs, (size_t)nc, sizeof *cs, cmp_change, (void *)v);
	int hi = 0, ci = 0;
	while (hi < nh) {
		const char *name = v->hdrs[hs[hi]].name;
		int he = hi;
		while (he < nh && !strcasecmp(v->hdrs[hs[he]].name, name))
			he++;
		while (ci < nc && strcasecmp(v->changes[cs[ci]].name, name) < 0)
			ci++;
		int ce = ci;
		while (ce < nc && !strcasecmp(v->changes[cs[ce]].name, name))
			ce++;
		/* changes of this name: first those for all (n = -1), then by n */
		bool all_removed = false;
		int all_value = -1, k = ci;
		for (; k < ce && v->changes[cs[k]].n < 0; k++) {
			if (v->changes[cs[k]].op == CH_REMOVE)
				all_removed = true;
			else
				all_value = cs[k];      /* ascending: the last one stays */
		}
		for (int occ = 0; occ < he - hi; occ++) {
			int h = hs[hi + occ], value = all_value;
			bool rm = all_removed;
			while (k < ce && v->changes[cs[k]].n < occ)
				k++;
			for (; k < ce && v->changes[cs[k]].n == occ; k++) {
				if (v->changes[cs[k]].op == CH_REMOVE)
					rm = true;
				else if (cs[k] > value)
					value = cs[k];
			}
			removed[h] = rm;
			value_of[h] = value;
		}
		hi = he;
		ci = ce;
	}
	free(hs);
	free(cs);
}

/*
 * The header section with the recorded changes.  With no header change it
 * is the original bytes (an envelope-only rewrite keeps the message byte
 * for byte).  With changes, every field written ends in a line end (a last
 * field without one would absorb an appended field) and the section ends
 * in the empty line when the body does not start with one (a body line
 * starting with white space would otherwise continue the last field).
 */
static void build_headers(struct msg_view *v, struct buf *b)
{
	bool edited = v->nchanges > 0;
	for (int c = 0; c < v->nchanges; c++)
		if (v->changes[c].op == CH_PREPEND)
			write_field(b, v->changes[c].name, v->changes[c].value);
	bool *removed = xmalloc(((size_t)v->nhdrs + 1) * sizeof *removed);
	int *value_of = xmalloc(((size_t)v->nhdrs + 1) * sizeof *value_of);
	match_changes(v, removed, value_of);
	for (int i = 0; i < v->nhdrs; i++) {
		struct hdr *h = &v->hdrs[i];
		if (removed[i])
			continue;
		if (value_of[i] >= 0)
			write_field(b, h->name, v->changes[value_of[i]].value);
		else
			buf_add(b, v->msg + h->start, h->end - h->start);
		if (edited && b->len && b->data[b->len - 1] != '\n')
			buf_adds(b, "\r\n");
	}
	free(removed);
	free(value_of);
	for (int c = 0; c < v->nchanges; c++)
		if (v->changes[c].op == CH_ADD)
			write_field(b, v->changes[c].name, v->changes[c].value);
	const char *body = v->msg + v->body_start;
	size_t body_len = v->len - v->body_start;
	if (edited && body_len && body[0] != '\n' && (body[0] != '\r' || body_len < 2 || body[1] != '\n'))
		buf_adds(b, "\r\n");
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

/* mime_parse() has already checked every leaf's encoding: nothing to
 * decode for the flags. */
unsigned part_flags(struct petrel_part *p)
{
	return p->mp->flags;
}

void msg_part_release(struct petrel_txn *t, int i)
{
	if (!t->msg || i < 0 || i >= t->msg->mime.nparts)
		return;
	buf_free(&t->msg->parts[i].body);
	t->msg->parts[i].decoded = false;
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
