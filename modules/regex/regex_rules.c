/*
 * regex_rules.c - the regex module's rules file: one rule per line,
 *     TARGET /PATTERN/FLAGS ACTION [ARGS]
 * read, checked and compiled (with JIT) at init.  Every error is reported
 * as FILE:LINE with PCRE2's own message and offset for a bad pattern.
 * See modules/regex/README.md for the language.
 */
#include "regex_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
	const char *word;
	enum target target;
} target_names[] = {
	{ .word = "header", .target = T_HEADER },
	{ .word = "body", .target = T_BODY },
	{ .word = "mime-type", .target = T_MIME_TYPE },
	{ .word = "filename", .target = T_FILENAME },
	{ .word = "sender", .target = T_SENDER },
	{ .word = "recipient", .target = T_RECIPIENT },
	{ .word = "client", .target = T_CLIENT },
	{ .word = "helo", .target = T_HELO },
};

static const struct {
	const char *word;
	enum action action;
} action_names[] = {
	{ .word = "reject", .action = A_REJECT },
	{ .word = "tempfail", .action = A_TEMPFAIL },
	{ .word = "discard", .action = A_DISCARD },
	{ .word = "hold", .action = A_HOLD },
	{ .word = "redirect", .action = A_REDIRECT },
	{ .word = "add", .action = A_ADD },
	{ .word = "remove", .action = A_REMOVE },
	{ .word = "log", .action = A_LOG },
};

const char *action_word(enum action a)
{
	for (size_t i = 0; i < sizeof action_names / sizeof action_names[0]; i++)
		if (action_names[i].action == a)
			return action_names[i].word;
	return "?";
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fputs("regex: out of memory\n", stderr);
		abort();
	}
	return p;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

/* ---- the rules file ---- */

static bool utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *e = p + n;
	while (p < e) {
		unsigned c = *p++;
		int more = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2
		         : (c & 0xf8) == 0xf0 ? 3 : -1;
		if (more < 0 || (more == 1 && c < 0xc2) || e - p < more)
			return false;
		for (int k = 0; k < more; k++)
			if ((p[k] & 0xc0) != 0x80)
				return false;
		p += more;
	}
	return true;
}

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* A word up to white space; returns its end. */
static const char *word_end(const char *p)
{
	while (*p && *p != ' ' && *p != '\t')
		p++;
	return p;
}

static bool word_is(const char *w, size_t n, const char *lit)
{
	return strlen(lit) == n && !strncasecmp(w, lit, n);
}

/* "CODE X.Y.Z text" with CODE's class (4 or 5) equal to X. */
static bool reply_ok(const char *r, char klass)
{
	if (r[0] != klass || !isdigit((unsigned char)r[1]) || !isdigit((unsigned char)r[2]) || r[3] != ' ')
		return false;
	const char *p = r + 4;
	if (p[0] != klass || p[1] != '.')
		return false;
	p += 2;
	for (int part = 0; part < 2; part++) {
		int n = 0;
		while (isdigit((unsigned char)*p) && n < 4) {
			p++;
			n++;
		}
		if (n < 1 || n > 3)
			return false;
		if (part == 0 && *p++ != '.')
			return false;
	}
	if (*p && *p != ' ')
		return false;
	for (; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static bool header_name_ok(const char *n, size_t len)
{
	if (!len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (n[i] < 33 || n[i] > 126 || n[i] == ':')
			return false;
	return true;
}

struct parse_ctx {
	struct regex_state *st;
	int errors;
};

static void rule_error(struct parse_ctx *pc, int line, const char *fmt, ...) PETREL_PRINTF(3, 4);
static void rule_error(struct parse_ctx *pc, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (pc->errors++ < MAX_CONF_ERRORS)
		regex_host->conf_error(pc->st->conf, "rules", "%s:%d: %s", pc->st->file, line, msg);
}

void rule_free(struct rule *r)
{
	free(r->header);
	pcre2_match_data_free(r->md);
	pcre2_code_free(r->re);
	free(r->arg);
	free(r->add_name);
	free(r->add_value);
	memset(r, 0, sizeof *r);
}

/* The arguments of action a, checked and stored in r; 0 or -1. */
static int parse_args(struct parse_ctx *pc, struct rule *r, const char *args)
{
	size_t n = strlen(args);
	while (n && (args[n - 1] == ' ' || args[n - 1] == '\t'))
		n--;
	switch (r->action) {
	case A_REJECT:
	case A_TEMPFAIL: {
		char klass = r->action == A_REJECT ? '5' : '4';
		const char *def = r->action == A_REJECT ? DEFAULT_REJECT : DEFAULT_TEMPFAIL;
		if (!n) {
			r->arg = xstrdup(def);
		} else if (isdigit((unsigned char)args[0])) {
			r->arg = xstrndup(args, n);
			if (!reply_ok(r->arg, klass)) {
				rule_error(pc, r->line, "%s: bad reply \"%s\": want \"%cNN %c.N.N text\"",
				           action_word(r->action), r->arg, klass, klass);
				return -1;
			}
		} else {        /* text only: the default code with this text */
			size_t cl = 10;  /* "550 5.7.1 " */
			r->arg = xmalloc(cl + n + 1);
			memcpy(r->arg, def, cl);
			memcpy(r->arg + cl, args, n);
			r->arg[cl + n] = 0;
			if (!reply_ok(r->arg, klass)) {
				rule_error(pc, r->line, "%s: bad reply text \"%.*s\"",
				           action_word(r->action), (int)n, args);
				return -1;
			}
		}
		return 0;
	}
	case A_REDIRECT: {
		const char *a = args;
		size_t an = n;
		if (an >= 2 && a[0] == '<' && a[an - 1] == '>') {
			a++;
			an -= 2;
		}
		const char *at = memchr(a, '@', an);
		if (!an || !at || at == a || at == a + an - 1 || memchr(a, ' ', an) || memchr(a, '\t', an)) {
			rule_error(pc, r->line, "redirect: want one address local@domain, got \"%.*s\"",
			           (int)n, args);
			return -1;
		}
		r->arg = xstrndup(a, an);
		return 0;
	}
	case A_ADD: {
		const char *colon = memchr(args, ':', n);
		if (!colon || !header_name_ok(args, (size_t)(colon - args))) {
			rule_error(pc, r->line, "add: want \"Name: value\", got \"%.*s\"", (int)n, args);
			return -1;
		}
		const char *v = skip_ws(colon + 1);
		r->add_name = xstrndup(args, (size_t)(colon - args));
		r->add_value = xstrndup(v, (size_t)(args + n - v));
		for (const char *p = r->add_value; *p; p++)
			if ((unsigned char)*p < 0x20 && *p != '\t') {
				rule_error(pc, r->line, "add: control character in the value");
				return -1;
			}
		return 0;
	}
	case A_REMOVE:
		if (r->target != T_HEADER && r->target != T_HEADER_ANY) {
			rule_error(pc, r->line, "remove: only for header targets");
			return -1;
		}
		if (n) {
			rule_error(pc, r->line, "remove: takes no argument");
			return -1;
		}
		return 0;
	case A_DISCARD:
	case A_HOLD:
	case A_LOG:         /* optional text, logged */
		if (n)
			r->arg = xstrndup(args, n);
		return 0;
	}
	return -1;
}

/* One non-blank, non-comment line into r; 0 or -1 (reported). */
static int parse_line(struct parse_ctx *pc, struct rule *r, const char *p)
{
	const char *e = word_end(p);
	size_t i;
	for (i = 0; i < sizeof target_names / sizeof target_names[0]; i++)
		if (word_is(p, (size_t)(e - p), target_names[i].word))
			break;
	if (i == sizeof target_names / sizeof target_names[0]) {
		rule_error(pc, r->line, "unknown target \"%.*s\" (header NAME, header *, body, "
		           "mime-type, filename, sender, recipient, client, helo)", (int)(e - p), p);
		return -1;
	}
	r->target = target_names[i].target;
	p = skip_ws(e);
	if (r->target == T_HEADER) {
		e = word_end(p);
		if (e - p == 1 && *p == '*') {
			r->target = T_HEADER_ANY;
		} else {
			size_t hn = (size_t)(e - p);
			if (hn && p[hn - 1] == ':')      /* "header Subject: /x/" */
				hn--;
			if (!header_name_ok(p, hn) || *p == '/') {
				rule_error(pc, r->line, "header: want a header name or * before the pattern");
				return -1;
			}
			r->header = xstrndup(p, hn);
		}
		p = skip_ws(e);
	}

	/* /PATTERN/FLAGS, with \/ for a slash inside */
	if (*p != '/') {
		rule_error(pc, r->line, "want /PATTERN/ after the target");
		return -1;
	}
	p++;
	size_t cap = strlen(p) + 1, plen = 0;
	char *pat = xmalloc(cap);
	for (;;) {
		if (!*p) {
			free(pat);
			rule_error(pc, r->line, "pattern: no closing /");
			return -1;
		}
		if (*p == '/')
			break;
		if (*p == '\\' && p[1] == '/') {
			pat[plen++] = '/';
			p += 2;
		} else if (*p == '\\' && p[1]) {
			pat[plen++] = *p++;
			pat[plen++] = *p++;
		} else {
			pat[plen++] = *p++;
		}
	}
	pat[plen] = 0;
	p++;
	uint32_t opts = 0;
	for (; *p && *p != ' ' && *p != '\t'; p++) {
		switch (*p) {
		case 'i': opts |= PCRE2_CASELESS; break;
		case 'x': opts |= PCRE2_EXTENDED; break;
		case 's': opts |= PCRE2_DOTALL; break;
		case 'm': opts |= PCRE2_MULTILINE; break;
		default:
			free(pat);
			rule_error(pc, r->line, "unknown pattern flag '%c' (i, x, s, m)", *p);
			return -1;
		}
	}
	if (utf8_valid(pat, plen))
		opts |= PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
	int errcode;
	PCRE2_SIZE erroff;
	r->re = pcre2_compile((PCRE2_SPTR)pat, plen, opts, &errcode, &erroff, NULL);
	if (!r->re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(errcode, msg, sizeof msg);
		rule_error(pc, r->line, "bad pattern /%s/: %s at offset %zu", pat, (char *)msg,
		           (size_t)erroff);
		free(pat);
		return -1;
	}
	free(pat);
	(void)pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE);   /* else interpreted */
	r->md = pcre2_match_data_create(1, NULL);
	if (!r->md) {
		rule_error(pc, r->line, "out of memory");
		return -1;
	}

	p = skip_ws(p);
	e = word_end(p);
	for (i = 0; i < sizeof action_names / sizeof action_names[0]; i++)
		if (word_is(p, (size_t)(e - p), action_names[i].word))
			break;
	if (i == sizeof action_names / sizeof action_names[0]) {
		if (p == e)
			rule_error(pc, r->line, "missing action after the pattern");
		else
			rule_error(pc, r->line, "unknown action \"%.*s\" (reject, tempfail, discard, "
			           "hold, redirect, add, remove, log)", (int)(e - p), p);
		return -1;
	}
	r->action = action_names[i].action;
	return parse_args(pc, r, skip_ws(e));
}

int rules_load(struct regex_state *st)
{
	FILE *f = fopen(st->file, "r");
	if (!f) {
		regex_host->conf_error(st->conf, "rules", "cannot open %s: %s", st->file, strerror(errno));
		return -1;
	}
	struct parse_ctx pc = { .st = st };
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0, alloc = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		if (memchr(line, 0, (size_t)n)) {
			rule_error(&pc, lineno, "NUL byte in the line");
			continue;
		}
		const char *p = skip_ws(line);
		if (!*p || *p == '#')
			continue;
		if (st->nrules == alloc) {
			alloc = alloc ? 2 * alloc : 16;
			struct rule *nr = realloc(st->rules, (size_t)alloc * sizeof *nr);
			if (!nr)
				abort();
			st->rules = nr;
		}
		struct rule *r = &st->rules[st->nrules];
		*r = (struct rule){ .line = lineno };
		if (parse_line(&pc, r, p) < 0) {
			rule_free(r);
			continue;
		}
		st->has[r->target] = true;
		if (r->target == T_HEADER_ANY)
			st->has[T_HEADER] = true;
		st->nrules++;
	}
	bool rerr = ferror(f);
	free(line);
	fclose(f);
	if (rerr) {
		regex_host->conf_error(st->conf, "rules", "%s: read error", st->file);
		return -1;
	}
	if (pc.errors > MAX_CONF_ERRORS)
		regex_host->conf_error(st->conf, "rules", "%s: %d more errors", st->file,
		                 pc.errors - MAX_CONF_ERRORS);
	return pc.errors ? -1 : 0;
}
