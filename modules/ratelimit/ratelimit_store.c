/*
 * ratelimit_store.c - message counters of the ratelimit module: a hash
 * table of two-bucket sliding windows, and its state file.
 *
 * State file format (text, one entry a line, '#' lines are comments):
 *
 *     petrel-ratelimit 1
 *     KEY HOUR_START HOUR_CUR HOUR_PREV DAY_START DAY_CUR DAY_PREV
 *
 * KEY has bytes <= 0x20, >= 0x7f and '%' written as %XX.  Starts are
 * seconds since the epoch, multiples of the window length.  Anything else
 * makes the whole file corrupt: the caller logs it and starts empty.
 */
#include "ratelimit_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATE_MAGIC "petrel-ratelimit 1"
#define MAX_COUNT 1000000000UL

long long rl_window_seconds(enum rl_window w)
{
	return w == RL_DAY ? 86400 : 3600;
}

static size_t hash_key(const char *s)
{
	uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return (size_t)h;
}

static int grow(struct rl_store *st)
{
	size_t nsize = st->size ? st->size * 2 : 64;
	struct rl_entry **ntab = calloc(nsize, sizeof *ntab);
	if (!ntab)
		return -1;
	for (size_t i = 0; i < st->size; i++) {
		struct rl_entry *e = st->tab[i], *next;
		for (; e; e = next) {
			next = e->next;
			size_t k = hash_key(e->key) & (nsize - 1);
			e->next = ntab[k];
			ntab[k] = e;
		}
	}
	free(st->tab);
	st->tab = ntab;
	st->size = nsize;
	return 0;
}

struct rl_entry *rl_store_get(struct rl_store *st, const char *key, int create)
{
	if (st->size) {
		for (struct rl_entry *e = st->tab[hash_key(key) & (st->size - 1)]; e; e = e->next)
			if (!strcmp(e->key, key))
				return e;
	}
	if (!create)
		return NULL;
	if (st->count >= st->size && grow(st) < 0)
		return NULL;
	size_t len = strlen(key);
	struct rl_entry *e = calloc(1, sizeof *e + len + 1);
	if (!e)
		return NULL;
	memcpy(e->key, key, len + 1);
	size_t k = hash_key(key) & (st->size - 1);
	e->next = st->tab[k];
	st->tab[k] = e;
	st->count++;
	return e;
}

static void unlink_entry(struct rl_store *st, struct rl_entry *e)
{
	struct rl_entry **p = &st->tab[hash_key(e->key) & (st->size - 1)];
	for (; *p; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			st->count--;
			free(e);
			return;
		}
}

/* Move bucket b forward to the window holding 'now'.  A clock that went
 * back leaves it alone (the counts stay, elapsed counts as 0). */
static void roll(struct rl_bucket *b, long long w, time_t now)
{
	long long start = (long long)now - (long long)now % w;
	if (start <= b->start)
		return;
	if (start == b->start + w) {
		b->prev = b->cur;
	} else {
		b->prev = 0;
	}
	b->cur = 0;
	b->start = start;
}

unsigned long rl_entry_estimate(struct rl_entry *e, enum rl_window win, time_t now)
{
	long long w = rl_window_seconds(win);
	struct rl_bucket *b = &e->b[win];
	roll(b, w, now);
	long long elapsed = (long long)now - b->start;
	if (elapsed < 0)
		elapsed = 0;
	if (elapsed > w)
		elapsed = w;
	unsigned long long weighted = ((unsigned long long)b->prev * (unsigned long long)(w - elapsed)
	                               + (unsigned long long)w - 1) / (unsigned long long)w;
	return (unsigned long)weighted + b->cur + e->inflight;
}

void rl_entry_count(struct rl_entry *e, time_t now)
{
	for (int i = 0; i < RL_NWINDOWS; i++) {
		roll(&e->b[i], rl_window_seconds((enum rl_window)i), now);
		if (e->b[i].cur < MAX_COUNT)
			e->b[i].cur++;
	}
}

static int entry_empty(struct rl_entry *e, time_t now)
{
	if (e->inflight)
		return 0;
	for (int i = 0; i < RL_NWINDOWS; i++) {
		roll(&e->b[i], rl_window_seconds((enum rl_window)i), now);
		if (e->b[i].cur || e->b[i].prev)
			return 0;
	}
	return 1;
}

void rl_store_hold(struct rl_entry *e)
{
	e->inflight++;
}

void rl_store_release(struct rl_store *st, struct rl_entry **ep, time_t now)
{
	struct rl_entry *e = *ep;
	if (!e)
		return;
	*ep = NULL;
	if (e->inflight)
		e->inflight--;
	if (entry_empty(e, now))
		unlink_entry(st, e);
}

void rl_store_free(struct rl_store *st)
{
	for (size_t i = 0; i < st->size; i++) {
		struct rl_entry *e = st->tab[i], *next;
		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(st->tab);
	st->tab = NULL;
	st->size = 0;
	st->count = 0;
}

/* ---- the state file ---- */

static void put_key(FILE *f, const char *k)
{
	for (; *k; k++) {
		unsigned char c = (unsigned char)*k;
		if (c <= 0x20 || c >= 0x7f || c == '%')
			fprintf(f, "%%%02X", c);
		else
			fputc(c, f);
	}
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode the key in place; -1 on a bad escape or an empty key. */
static int get_key(char *k)
{
	char *out = k;
	for (char *p = k; *p; p++) {
		if (*p != '%') {
			*out++ = *p;
			continue;
		}
		int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return -1;
		*out++ = (char)(hi * 16 + lo);
		p += 2;
	}
	*out = 0;
	return out == k ? -1 : 0;
}

static int get_num(const char *tok, long long max, long long *out)
{
	if (!tok || *tok < '0' || *tok > '9')
		return -1;
	errno = 0;
	char *end;
	long long v = strtoll(tok, &end, 10);
	if (errno || *end || v < 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_line(struct rl_store *st, char *line)
{
	char *save = NULL;
	char *key = strtok_r(line, " \t", &save);
	if (!key || get_key(key) < 0)
		return -1;
	struct rl_bucket b[RL_NWINDOWS];
	for (int i = 0; i < RL_NWINDOWS; i++) {
		long long start, cur, prev;
		if (get_num(strtok_r(NULL, " \t", &save), (long long)1 << 50, &start) < 0 ||
		    get_num(strtok_r(NULL, " \t", &save), (long long)MAX_COUNT, &cur) < 0 ||
		    get_num(strtok_r(NULL, " \t", &save), (long long)MAX_COUNT, &prev) < 0 ||
		    start % rl_window_seconds((enum rl_window)i))
			return -1;
		b[i] = (struct rl_bucket){ .start = start, .cur = (unsigned long)cur,
		                           .prev = (unsigned long)prev };
	}
	if (strtok_r(NULL, " \t", &save) || rl_store_get(st, key, 0))
		return -1;     /* trailing junk, or a key given twice */
	struct rl_entry *e = rl_store_get(st, key, 1);
	if (!e)
		return -1;
	memcpy(e->b, b, sizeof b);
	return 0;
}

int rl_store_load(struct rl_store *st, const char *path, time_t now,
                  char *errbuf, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT)
			return 0;
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0, bad = 0;
	while (!bad && (n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (n == 0 || line[n - 1] != '\n') {
			bad = 1;       /* a truncated last line */
			break;
		}
		line[--n] = 0;
		if (lineno == 1) {
			bad = strcmp(line, STATE_MAGIC) != 0;
			continue;
		}
		if (!*line || *line == '#')
			continue;
		bad = parse_line(st, line) < 0;
	}
	if (!bad && ferror(f)) {
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		bad = 2;
	} else if (!bad && lineno == 0) {
		bad = 1;           /* an empty file: we never write one */
		lineno = 1;
	}
	free(line);
	fclose(f);
	if (bad) {
		if (bad == 1)
			snprintf(errbuf, errlen, "%s:%d: corrupt state file", path, lineno);
		rl_store_free(st);
		return -1;
	}
	/* drop what has expired while we were down */
	for (size_t i = 0; i < st->size; i++) {
		struct rl_entry *e = st->tab[i], *next;
		for (; e; e = next) {
			next = e->next;
			if (entry_empty(e, now))
				unlink_entry(st, e);
		}
	}
	return 0;
}

int rl_store_save(struct rl_store *st, const char *path, time_t now,
                  char *errbuf, size_t errlen)
{
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 5);
	if (!tmp) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FILE *f = fd < 0 ? NULL : fdopen(fd, "w");
	if (!f) {
		snprintf(errbuf, errlen, "%s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(tmp);
		return -1;
	}
	fprintf(f, "%s\n", STATE_MAGIC);
	for (size_t i = 0; i < st->size; i++) {
		struct rl_entry *e = st->tab[i], *next;
		for (; e; e = next) {
			next = e->next;
			if (entry_empty(e, now)) {
				unlink_entry(st, e);
				continue;
			}
			put_key(f, e->key);
			for (int k = 0; k < RL_NWINDOWS; k++)
				fprintf(f, " %lld %lu %lu", e->b[k].start, e->b[k].cur, e->b[k].prev);
			fputc('\n', f);
		}
	}
	int failed = ferror(f);
	if (fclose(f) != 0)
		failed = 1;
	if (failed || rename(tmp, path) < 0) {
		snprintf(errbuf, errlen, "%s: %s", failed ? tmp : path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}
