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
 *
 * The journal STATE.log has the same lines after its own first line,
 * "petrel-ratelimit-log 1"; a key may come many times (merged, see
 * ratelimit_store.h).  A torn last line (a crash while appending) is
 * skipped.
 */
#include "ratelimit_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_MAGIC "petrel-ratelimit 1"
const char rl_journal_magic[] = "petrel-ratelimit-log 1";
#define MAX_COUNT 1000000000UL

long long rl_window_seconds(enum rl_window w)
{
	return w == RL_DAY ? 86400 : 3600;
}

/* SipHash-1-3 (Aumasson, Bernstein) of the string s under the store's key. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
} while (0)

static size_t hash_key(const struct rl_store *st, const char *s)
{
	uint64_t k0 = st->k0, k1 = st->k1;
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
	size_t len = strlen(s);
	const unsigned char *p = (const unsigned char *)s;
	for (size_t left = len; left >= 8; left -= 8, p += 8) {
		uint64_t m = 0;
		for (int i = 0; i < 8; i++)
			m |= (uint64_t)p[i] << (8 * i);
		v3 ^= m;
		SIPROUND;
		v0 ^= m;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)p[i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return (size_t)(v0 ^ v1 ^ v2 ^ v3);
}

/* The hash key, once per store, before its first entry. */
static void store_key(struct rl_store *st)
{
	if (st->keyed)
		return;
	unsigned long long k[2] = {0, 0};
	if (getrandom(k, sizeof k, 0) != (ssize_t)sizeof k) {
		/* no entropy source: still not a constant an attacker knows */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		k[0] ^= (unsigned long long)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (unsigned long long)getpid();
		k[1] ^= (unsigned long long)ts.tv_sec ^ (unsigned long long)(uintptr_t)st;
	}
	st->k0 = k[0];
	st->k1 = k[1];
	st->keyed = 1;
}

static int grow(struct rl_store *st)
{
	store_key(st);
	size_t nsize = st->size ? st->size * 2 : 64;
	struct rl_entry **ntab = calloc(nsize, sizeof *ntab);
	if (!ntab)
		return -1;
	for (size_t i = 0; i < st->size; i++) {
		struct rl_entry *e = st->tab[i], *next;
		for (; e; e = next) {
			next = e->next;
			size_t k = hash_key(st, e->key) & (nsize - 1);
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
		for (struct rl_entry *e = st->tab[hash_key(st, key) & (st->size - 1)]; e; e = e->next)
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
	size_t k = hash_key(st, key) & (st->size - 1);
	e->next = st->tab[k];
	st->tab[k] = e;
	st->count++;
	return e;
}

static void unlink_entry(struct rl_store *st, struct rl_entry *e)
{
	struct rl_entry **p = &st->tab[hash_key(st, e->key) & (st->size - 1)];
	for (; *p; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			st->count--;
			/* an empty entry needs no journal line: what the journal
			 * last said of it has expired by now too */
			if (e->dprev) {
				*e->dprev = e->dnext;
				if (e->dnext)
					e->dnext->dprev = e->dprev;
			}
			free(e);
			return;
		}
}

void rl_store_mark(struct rl_store *st, struct rl_entry *e)
{
	if (e->dprev)
		return;
	e->dnext = st->dirty;
	if (st->dirty)
		st->dirty->dprev = &e->dnext;
	e->dprev = &st->dirty;
	st->dirty = e;
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
	st->dirty = NULL;
	st->sweep = 0;
}

void rl_store_sweep(struct rl_store *st, time_t now, size_t n)
{
	for (; n && st->size; n--) {
		size_t i = st->sweep++ & (st->size - 1);
		struct rl_entry *e = st->tab[i], *next;
		for (; e; e = next) {
			next = e->next;
			if (entry_empty(e, now))
				unlink_entry(st, e);
		}
	}
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

/* Merge one bucket state into another: the later window, or in the same
 * window the larger counts (they only grow). */
static void merge_bucket(struct rl_bucket *into, const struct rl_bucket *b)
{
	if (b->start > into->start) {
		*into = *b;
	} else if (b->start == into->start) {
		if (b->cur > into->cur)
			into->cur = b->cur;
		if (b->prev > into->prev)
			into->prev = b->prev;
	}
}

/* One "KEY b b" line; merge: a key seen before is merged (a journal),
 * else it is an error (a snapshot has each key once). */
static int parse_line(struct rl_store *st, char *line, int merge)
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
	if (strtok_r(NULL, " \t", &save))
		return -1;     /* trailing junk */
	struct rl_entry *e = rl_store_get(st, key, 0);
	if (e && !merge)
		return -1;     /* a key given twice */
	if (!e && !(e = rl_store_get(st, key, 1)))
		return -1;
	for (int i = 0; i < RL_NWINDOWS; i++)
		merge_bucket(&e->b[i], &b[i]);
	return 0;
}

/* Read one file into st.  journal: its magic, keys merged, a torn last
 * line skipped.  0; 1 when missing; -1 with errbuf set. */
static int load_file(struct rl_store *st, const char *path, int journal,
                     char *errbuf, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 && errno == ENOENT)
		return 1;
	if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		snprintf(errbuf, errlen, "%s: %s", path, fd < 0 ? strerror(errno)
		         : S_ISREG(sb.st_mode) ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	FILE *f = fdopen(fd, "r");
	if (!f) {
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0, bad = 0;
	while (!bad && (n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (n == 0 || line[n - 1] != '\n') {
			bad = !journal;    /* a truncated last line */
			break;
		}
		line[--n] = 0;
		if (lineno == 1) {
			bad = strcmp(line, journal ? rl_journal_magic : STATE_MAGIC) != 0;
			continue;
		}
		if (!*line || *line == '#')
			continue;
		bad = parse_line(st, line, journal) < 0;
	}
	if (!bad && ferror(f)) {
		snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
		bad = 2;
	} else if (!bad && lineno == 0 && !journal) {
		bad = 1;           /* an empty file: we never write one */
		lineno = 1;
	}
	free(line);
	fclose(f);
	if (bad == 1)
		snprintf(errbuf, errlen, "%s:%d: corrupt %s", path, lineno,
		         journal ? "journal (read up to here)" : "state file");
	return bad ? -1 : 0;
}

static char *path_plus(const char *path, const char *ext)
{
	size_t plen = strlen(path), elen = strlen(ext);
	char *p = malloc(plen + elen + 1);
	if (p) {
		memcpy(p, path, plen);
		memcpy(p + plen, ext, elen + 1);
	}
	return p;
}

static void drop_expired(struct rl_store *st, time_t now)
{
	for (size_t i = 0; i < st->size; i++) {
		struct rl_entry *e = st->tab[i], *next;
		for (; e; e = next) {
			next = e->next;
			if (entry_empty(e, now))
				unlink_entry(st, e);
		}
	}
}

/* path, then (all) its journals, merged; -1 as rl_store_load. */
static int load_all(struct rl_store *st, const char *path, int journals, time_t now,
                    char *errbuf, size_t errlen)
{
	int r = load_file(st, path, 0, errbuf, errlen);
	if (r < 0)
		rl_store_free(st);   /* a corrupt snapshot: start empty */
	int failed = r < 0;
	const char *exts[] = { ".log.old", ".log" };
	for (int i = 0; i < journals; i++) {
		char *jp = path_plus(path, exts[i]);
		char err[512];
		if (jp && load_file(st, jp, 1, failed ? err : errbuf, failed ? sizeof err : errlen) < 0)
			failed = 1;
		free(jp);
	}
	drop_expired(st, now);   /* what has expired while we were down */
	return failed ? -1 : 0;
}

int rl_store_load(struct rl_store *st, const char *path, time_t now,
                  char *errbuf, size_t errlen)
{
	return load_all(st, path, 2, now, errbuf, errlen);
}

static void put_entry(FILE *f, const struct rl_entry *e)
{
	put_key(f, e->key);
	for (int k = 0; k < RL_NWINDOWS; k++)
		fprintf(f, " %lld %lu %lu", e->b[k].start, e->b[k].cur, e->b[k].prev);
	fputc('\n', f);
}

long rl_store_journal(struct rl_store *st, int fd, char *errbuf, size_t errlen)
{
	if (!st->dirty)
		return 0;
	char *data = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&data, &len);
	if (!f) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	for (struct rl_entry *e = st->dirty; e; e = e->dnext)
		put_entry(f, e);
	if (fclose(f) != 0) {
		free(data);
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(errbuf, errlen, "%s", n < 0 ? strerror(errno) : "short write");
			free(data);
			/* a torn line is skipped at load; the entries stay marked */
			return -1;
		}
		off += (size_t)n;
	}
	free(data);
	while (st->dirty) {
		struct rl_entry *e = st->dirty;
		st->dirty = e->dnext;
		e->dnext = NULL;
		e->dprev = NULL;
	}
	return (long)len;
}

/* Write st to path (path.tmp, fsync, rename). */
static int write_snapshot(struct rl_store *st, const char *path, time_t now,
                          char *errbuf, size_t errlen)
{
	char *tmp = path_plus(path, ".tmp");
	if (!tmp) {
		snprintf(errbuf, errlen, "out of memory");
		return -1;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
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
			put_entry(f, e);
		}
	}
	int failed = ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0;
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

static void unlink_ext(const char *path, const char *ext)
{
	char *p = path_plus(path, ext);
	if (p)
		(void)unlink(p);
	free(p);
}

int rl_store_save(struct rl_store *st, const char *path, time_t now,
                  char *errbuf, size_t errlen)
{
	if (write_snapshot(st, path, now, errbuf, errlen) < 0)
		return -1;
	unlink_ext(path, ".log.old");
	unlink_ext(path, ".log");
	return 0;
}

int rl_store_compact(const char *path, time_t now, char *errbuf, size_t errlen)
{
	struct rl_store st = {0};
	char err[512];
	/* a bad line was logged when the daemon loaded it; merge what reads */
	(void)load_all(&st, path, 1, now, err, sizeof err);
	int r = write_snapshot(&st, path, now, errbuf, errlen);
	rl_store_free(&st);
	if (r == 0)
		unlink_ext(path, ".log.old");
	return r;
}
