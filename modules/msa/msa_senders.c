/*
 * msa_senders.c - the msa module's sender table and From: reader (see
 * msa_senders.h).  Plain C with no host calls, so the unit test links it
 * alone.
 */
#include "msa_senders.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

struct entry {
	char *login;
	char *item;         /* lower case: "local@domain" or "@domain" */
};

struct msa_senders {
	struct entry *e;
	size_t n, cap;
};

__attribute__((format(printf, 4, 5)))
static int fail(char *err, size_t errsize, unsigned line, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	snprintf(err, errsize, "%u: %s", line, why);
	return -1;
}

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

/* text[*from..*to) trimmed of blanks at both ends */
static void trim(const char *text, size_t *from, size_t *to)
{
	while (*from < *to && blank(text[*from]))
		(*from)++;
	while (*to > *from && blank(text[*to - 1]))
		(*to)--;
}

/* NULL when item (n octets) is an address or @domain; else why not. */
static const char *item_problem(const char *item, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)item[i];
		if (c <= ' ' || c == 0x7f)
			return "white space or a control character in it";
		if (c == '<' || c == '>' || c == '"' || c == '(' || c == ')' || c == ';' || c == ':')
			return "expected local@domain or @domain, without <>, quotes or comments";
	}
	const char *at = memrchr(item, '@', n);
	if (!at)
		return "no '@' in it: expected local@domain or @domain";
	if ((size_t)(at - item) == n - 1)
		return "no domain after the '@'";
	if (at == item)
		return NULL;                    /* @domain */
	if (memchr(item, '@', (size_t)(at - item)))
		return "more than one '@' in it";
	return NULL;
}

static int add_entry(struct msa_senders *t, const char *login, size_t ln, const char *item, size_t n)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		struct entry *e = realloc(t->e, cap * sizeof *e);
		if (!e)
			return -1;
		t->e = e;
		t->cap = cap;
	}
	char *l = strndup(login, ln), *it = malloc(n + 1);
	if (!l || !it) {
		free(l);
		free(it);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		it[i] = (char)tolower((unsigned char)item[i]);
	it[n] = 0;
	t->e[t->n++] = (struct entry){ .login = l, .item = it };
	return 0;
}

/* One non-blank, non-comment line text[from..to).  0 or -1 (err set). */
static int parse_line(struct msa_senders *t, const char *text, size_t from, size_t to,
                      unsigned line, char *err, size_t errsize)
{
	const char *colon = memchr(text + from, ':', to - from);
	if (!colon)
		return fail(err, errsize, line, "expected 'login: address, @domain, ...'");
	size_t ls = from, le = (size_t)(colon - text);
	trim(text, &ls, &le);
	if (ls == le)
		return fail(err, errsize, line, "no login before the ':'");
	for (size_t i = ls; i < le; i++)
		if ((unsigned char)text[i] <= ' ' || text[i] == 0x7f)
			return fail(err, errsize, line, "login '%.*s' has white space or a control character in it",
			            (int)(le - ls), text + ls);
	size_t rest_s = (size_t)(colon - text) + 1, rest_e = to;
	trim(text, &rest_s, &rest_e);
	if (rest_s == rest_e)
		return fail(err, errsize, line, "no address after '%.*s:'", (int)(le - ls), text + ls);
	while (rest_s <= rest_e) {
		const char *comma = memchr(text + rest_s, ',', rest_e - rest_s);
		size_t is = rest_s, ie = comma ? (size_t)(comma - text) : rest_e;
		rest_s = ie + 1;
		trim(text, &is, &ie);
		if (is == ie)
			return fail(err, errsize, line, "an empty address in the list (two commas, or one at an end)");
		const char *why = item_problem(text + is, ie - is);
		if (why)
			return fail(err, errsize, line, "'%.*s': %s", (int)(ie - is), text + is, why);
		if (add_entry(t, text + ls, le - ls, text + is, ie - is) < 0)
			return fail(err, errsize, line, "out of memory");
		if (!comma)
			break;
	}
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	return strcmp(x->login, y->login);
}

int msa_senders_parse(const char *text, size_t len, struct msa_senders **out, char *err,
                      size_t errsize)
{
	struct msa_senders *t = calloc(1, sizeof *t);
	*out = NULL;
	if (!t)
		return fail(err, errsize, 0, "out of memory");
	size_t pos = 0;
	unsigned line = 0;
	while (pos < len) {
		line++;
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len, next = nl ? end + 1 : len;
		if (end > pos && text[end - 1] == '\r')
			end--;
		if (end - pos > MSA_SENDERS_LINE_MAX) {
			fail(err, errsize, line, "line longer than %d octets", MSA_SENDERS_LINE_MAX);
			goto bad;
		}
		if (memchr(text + pos, 0, end - pos)) {
			fail(err, errsize, line, "a NUL byte in the line");
			goto bad;
		}
		size_t from = pos, to = end;
		trim(text, &from, &to);
		pos = next;
		if (from == to || text[from] == '#')
			continue;
		if (parse_line(t, text, from, to, line, err, errsize) < 0)
			goto bad;
	}
	if (t->n)
		qsort(t->e, t->n, sizeof *t->e, cmp_entry);
	*out = t;
	return 0;
bad:
	msa_senders_free(&t);
	return -1;
}

int msa_senders_load(const char *path, struct msa_senders **out, char *err, size_t errsize)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errsize, "%s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	const char *why_not = NULL;
	if (fstat(fd, &st) < 0)
		why_not = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		why_not = "not a regular file";
	else if ((unsigned long long)st.st_size > MSA_SENDERS_FILE_MAX)
		why_not = "larger than 16 MiB";
	if (why_not) {
		snprintf(err, errsize, "%s: %s", path, why_not);
		close(fd);
		return -1;
	}
	size_t size = (size_t)st.st_size, got = 0;
	char *buf = malloc(size + 1);
	if (!buf) {
		snprintf(err, errsize, "%s: out of memory", path);
		close(fd);
		return -1;
	}
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errsize, "%s: %s", path, n < 0 ? strerror(errno) : "shorter than its size");
			free(buf);
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	char why[300];
	int r = msa_senders_parse(buf, size, out, why, sizeof why);
	free(buf);
	if (r < 0)
		snprintf(err, errsize, "%s:%s", path, why);
	return r;
}

int msa_senders_allows(const struct msa_senders *t, const char *login, const char *address)
{
	if (!t || !t->n || !login || !address)
		return 0;
	const char *at = strrchr(address, '@');
	if (!at || at == address || !at[1])
		return 0;
	/* the first entry of login: a lower bound by bisection */
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(t->e[mid].login, login) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < t->n && !strcmp(t->e[i].login, login); i++) {
		const char *item = t->e[i].item;
		if (item[0] == '@' ? !strcasecmp(item + 1, at + 1) : !strcasecmp(item, address))
			return 1;
	}
	return 0;
}

size_t msa_senders_count(const struct msa_senders *t)
{
	return t ? t->n : 0;
}

void msa_senders_free(struct msa_senders **tp)
{
	struct msa_senders *t = *tp;
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->e[i].login);
		free(t->e[i].item);
	}
	free(t->e);
	free(t);
	*tp = NULL;
}

/* --- From: --- */

struct from_scan {
	char **addrs;
	int n;
	char *cur;           /* the segment's addr-spec outside <> (display names dropped at '<') */
	size_t curlen;
	char *ang;           /* the angle address */
	size_t anglen;
	bool in_angle, have_angle;
};

static int emit(struct from_scan *f)
{
	const char *src = f->have_angle ? f->ang : f->cur;
	size_t n = f->have_angle ? f->anglen : f->curlen;
	bool any = f->have_angle || n;
	f->curlen = f->anglen = 0;
	f->have_angle = false;
	if (!any)
		return 0;                       /* an empty member (obs-mbox-list) */
	if (f->n == MSA_FROM_MAX)
		return -1;
	char *a = strndup(src, n);
	if (!a)
		return -1;
	f->addrs[f->n++] = a;
	return 0;
}

/* Copy the content of the quoted string at v[*i] (the opening quote) to
 * out, quotes and backslashes undone: a quoted local part compares as
 * the envelope's unquoted one.  *i ends after the closing quote; -1 when
 * it does not close. */
static int quoted(const char *v, size_t *i, char *out, size_t *olen)
{
	(*i)++;
	while (v[*i] && v[*i] != '"') {
		if (v[*i] == '\\' && v[*i + 1])
			(*i)++;
		out[(*olen)++] = v[(*i)++];
	}
	if (v[*i] != '"')
		return -1;
	(*i)++;
	return 0;
}

/* Skip the (nested) comment at v[*i]; -1 when it does not close. */
static int comment(const char *v, size_t *i)
{
	int depth = 0;
	do {
		if (v[*i] == '\\' && v[*i + 1])
			(*i)++;
		else if (v[*i] == '(')
			depth++;
		else if (v[*i] == ')')
			depth--;
		(*i)++;
	} while (depth > 0 && v[*i]);
	return depth ? -1 : 0;
}

static int scan_char(struct from_scan *f, const char *v, size_t *i)
{
	char c = v[*i];
	if (c == '"')
		return f->in_angle ? quoted(v, i, f->ang, &f->anglen)
		       : f->have_angle ? -1 : quoted(v, i, f->cur, &f->curlen);
	if (c == '(')
		return comment(v, i);
	(*i)++;
	if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
		return 0;
	if (f->in_angle) {
		if (c == '>') {
			f->in_angle = false;
			f->have_angle = true;
		} else if (c == '<') {
			return -1;
		} else if (c == ':' && f->anglen && f->ang[0] == '@') {
			f->anglen = 0;              /* obs-route "@a,@b:" dropped */
		} else if ((c == ':' || c == ',') && !(f->anglen && f->ang[0] == '@')) {
			return -1;
		} else {
			f->ang[f->anglen++] = c;
		}
		return 0;
	}
	if (c == ',' || c == ';')
		return emit(f);
	if (c == '<') {
		if (f->have_angle)
			return -1;
		f->in_angle = true;
		f->anglen = 0;
		return 0;
	}
	if (c == ':') {                     /* a group's name ends */
		if (f->have_angle)
			return -1;
		f->curlen = 0;
		return 0;
	}
	if (f->have_angle)
		return -1;                      /* text after <...> */
	f->cur[f->curlen++] = c;
	return 0;
}

int msa_from_parse(const char *value, char ***addrs)
{
	size_t len = strlen(value);
	struct from_scan f = {
		.addrs = calloc(MSA_FROM_MAX, sizeof *f.addrs),
		.cur = malloc(len + 1),
		.ang = malloc(len + 1),
	};
	int r = f.addrs && f.cur && f.ang ? 0 : -1;
	size_t i = 0;
	while (r == 0 && value[i])
		r = scan_char(&f, value, &i);
	if (r == 0 && f.in_angle)
		r = -1;
	if (r == 0)
		r = emit(&f);
	free(f.cur);
	free(f.ang);
	if (r < 0) {
		msa_from_free(&f.addrs, f.n);
		*addrs = NULL;
		return -1;
	}
	*addrs = f.addrs;
	return f.n;
}

void msa_from_free(char ***addrs, int n)
{
	if (!*addrs)
		return;
	for (int i = 0; i < n; i++)
		free((*addrs)[i]);
	free(*addrs);
	*addrs = NULL;
}
