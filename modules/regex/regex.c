/*
 * regex.c - the "regex" filter: Postfix-style header/body checks and
 * envelope checks from one rules file, matched with PCRE2.
 *
 * Configuration:
 *     filters = [ "regex" ];
 *     modules = { regex = { rules = "/etc/petrel/regex.rules"; }; };
 *
 * The rules file holds one rule per line ('#' comments, blank lines):
 *     TARGET /PATTERN/FLAGS ACTION [ARGS]
 * see parse_line() below and modules/regex/README.md.
 *
 * Promises:
 *   - Every pattern is compiled (and JIT-compiled where the CPU allows)
 *     at init; a bad pattern, target, action or reply is a configuration
 *     error "FILE:LINE: ..." and the daemon refuses to start.
 *   - Matching never errors on mail: patterns that are valid UTF-8 are
 *     compiled with PCRE2_UTF|PCRE2_MATCH_INVALID_UTF, so invalid UTF-8
 *     in a subject simply does not match; a match-limit overrun is
 *     logged (warn) and counts as no match.
 *   - For one object (a header, a body line, an address...) the first
 *     rule with a deciding action (reject, tempfail, discard, hold,
 *     redirect) wins; add, remove and log never stop the evaluation.
 *   - Every match is logged: "QID: regex: rule LINE matched TARGET: ...".
 *   - Nothing blocks.  Per-session state (a discard/hold/redirect decided
 *     at connect or HELO, before any transaction) lives in the session
 *     slot; per-transaction state (a redirect decided at MAIL or RCPT,
 *     applied when the message is complete) in the txn slot.  Both are
 *     freed in session_end / txn_end.
 *
 * Ownership: the state and its rules belong to the module from init to
 * fini; strings handed out by the host are borrowed.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <petrel/petrel.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_REJECT   "550 5.7.1 Message content rejected"
#define DEFAULT_TEMPFAIL "451 4.7.1 Try again later"
#define DEFAULT_BODY_LIMIT (1024 * 1024)   /* bytes of each text part scanned */
#define MAX_CONF_ERRORS 20
#define LOG_SUBJECT_MAX 200
#define MATCH_LIMIT 1000000

enum target {
	T_HEADER,       /* header NAME: the decoded value */
	T_HEADER_ANY,   /* header *: "Name: decoded value" */
	T_BODY,
	T_MIME_TYPE,
	T_FILENAME,
	T_SENDER,
	T_RECIPIENT,
	T_CLIENT,
	T_HELO,
};

enum action {
	A_REJECT,
	A_TEMPFAIL,
	A_DISCARD,
	A_HOLD,
	A_REDIRECT,
	A_ADD,
	A_REMOVE,
	A_LOG,
};

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

static const char *action_word(enum action a)
{
	for (size_t i = 0; i < sizeof action_names / sizeof action_names[0]; i++)
		if (action_names[i].action == a)
			return action_names[i].word;
	return "?";
}

struct rule {
	int line;
	enum target target;
	char *header;           /* T_HEADER: the header name */
	pcre2_code *re;
	pcre2_match_data *md;
	enum action action;
	char *arg;              /* reply, address, log text; NULL if none */
	char *add_name;         /* A_ADD */
	char *add_value;
};

struct regex_state {
	petrel_conf *conf;
	char *file;
	struct rule *rules;
	int nrules;
	bool has[T_HELO + 1];   /* some rule has this target */
	pcre2_match_context *mctx;
	long long body_limit;
};

/* Session slot: a decision taken before there was a transaction. */
struct regex_session {
	int verdict;            /* PETREL_CONTINUE, _DISCARD or _HOLD */
	char *redirect;
};

/* Txn slot: a redirect decided at MAIL/RCPT, applied at the message. */
struct regex_txn {
	char *redirect;
};

/* The object being judged: where to log, reply, and act. */
struct subject {
	petrel_session *s;      /* always set */
	petrel_txn *t;          /* NULL at connect and HELO */
	const char *what;       /* "header Subject", "body", ... for the log */
	const char *header;     /* header targets: the name ... */
	int occurrence;         /* ... and which one of that name */
	bool message;           /* message stage: a redirect applies at once */
};

static const struct petrel_host *host;

static void *xmalloc(size_t n)
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

static char *xstrdup(const char *s)
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
		host->conf_error(pc->st->conf, "rules", "%s:%d: %s", pc->st->file, line, msg);
}

static void rule_free(struct rule *r)
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

static int rules_load(struct regex_state *st)
{
	FILE *f = fopen(st->file, "r");
	if (!f) {
		host->conf_error(st->conf, "rules", "cannot open %s: %s", st->file, strerror(errno));
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
		host->conf_error(st->conf, "rules", "%s: read error", st->file);
		return -1;
	}
	if (pc.errors > MAX_CONF_ERRORS)
		host->conf_error(st->conf, "rules", "%s: %d more errors", st->file,
		                 pc.errors - MAX_CONF_ERRORS);
	return pc.errors ? -1 : 0;
}

/* ---- matching ---- */

static bool rule_matches(struct regex_state *st, struct rule *r, const char *subj, size_t len,
                         const char *qid)
{
	int rc = pcre2_match(r->re, (PCRE2_SPTR)subj, len, 0, 0, r->md, st->mctx);
	if (rc >= 0)
		return true;
	if (rc != PCRE2_ERROR_NOMATCH) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(rc, msg, sizeof msg);
		host->log(PETREL_LOG_WARN, "%s: regex: rule %d (%s:%d): %s: treated as no match",
		          qid, r->line, st->file, r->line, (char *)msg);
	}
	return false;
}

/* A subject fit for one log line: no control characters, bounded. */
static void log_safe(char *out, size_t size, const char *s, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 4 < size; i++) {
		unsigned char c = (unsigned char)s[i];
		out[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	if (len && o + 4 >= size) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = 0;
}

static const char *subj_qid(const struct subject *sj)
{
	return sj->t ? host->txn_qid(sj->t) : "NOQUEUE";
}

static void log_match(struct rule *r, const struct subject *sj, const char *subj, size_t len)
{
	char safe[LOG_SUBJECT_MAX + 4];
	log_safe(safe, sizeof safe, subj, len);
	if (r->action == A_LOG) {
		host->log(PETREL_LOG_INFO, "%s: regex: rule %d matched %s: %s", subj_qid(sj), r->line,
		          sj->what, r->arg ? r->arg : safe);
		return;
	}
	host->log(PETREL_LOG_INFO, "%s: regex: rule %d matched %s: %s%s%s (\"%s\")%s%s",
	          subj_qid(sj), r->line, sj->what, action_word(r->action),
	          r->action == A_ADD || r->arg ? " " : "",
	          r->action == A_ADD ? r->add_name : r->arg ? r->arg : "", safe,
	          sj->t ? "" : " from ", sj->t ? "" : host->session_client_addr(sj->s));
}

static struct regex_session *session_state(struct regex_state *st, petrel_session *s)
{
	void **slot = host->session_slot(s, st->conf);
	if (!*slot) {
		struct regex_session *ss = xmalloc(sizeof *ss);
		*ss = (struct regex_session){ .verdict = PETREL_CONTINUE };
		*slot = ss;
	}
	return *slot;
}

static struct regex_txn *txn_state(struct regex_state *st, petrel_txn *t)
{
	void **slot = host->txn_slot(t, st->conf);
	if (!*slot) {
		struct regex_txn *ts = xmalloc(sizeof *ts);
		*ts = (struct regex_txn){ 0 };
		*slot = ts;
	}
	return *slot;
}

/* Point every recipient of t at address; 0, or -1 (nothing changed). */
static int redirect_now(petrel_txn *t, const char *address)
{
	int n = host->rcpt_count(t);
	char **old = xmalloc((size_t)n * sizeof *old + 1);
	for (int i = 0; i < n; i++)
		old[i] = xstrdup(host->rcpt_address(t, i));
	bool have = false;
	for (int i = 0; i < n; i++)
		have |= !strcasecmp(old[i], address);
	int rc = 0;
	/* Add first, so a failure leaves the message as it was; then drop
	 * the others one by one (remove(t, NULL) would drop the new one). */
	if (!have && host->rcpt_add(t, address) < 0)
		rc = -1;
	for (int i = 0; i < n; i++) {
		if (!rc && strcasecmp(old[i], address))
			(void)host->rcpt_remove(t, old[i]);
		free(old[i]);
	}
	free(old);
	return rc;
}

/* A redirect at the message stage; the verdict. */
static int redirect_message(petrel_txn *t, const char *to, int line)
{
	if (redirect_now(t, to) < 0) {
		host->log(PETREL_LOG_ERROR, "%s: regex: rule %d: redirect to <%s> failed: "
		          "temporary failure", host->txn_qid(t), line, to);
		(void)host->txn_reply(t, "451 4.3.0 Error: redirect failed, try again later");
		return PETREL_TEMPFAIL;
	}
	return PETREL_CONTINUE;
}

/* Rule r matched: log it and act.  Sets *decided for a deciding action
 * (the object is judged) and returns the hook's verdict. */
static int act(struct regex_state *st, struct rule *r, const struct subject *sj,
               const char *subj, size_t len, bool *decided)
{
	log_match(r, sj, subj, len);
	*decided = true;
	switch (r->action) {
	case A_REJECT:
	case A_TEMPFAIL:
		if (sj->t)
			(void)host->txn_reply(sj->t, "%s", r->arg);
		else
			(void)host->session_reply(sj->s, "%s", r->arg);
		return r->action == A_REJECT ? PETREL_REJECT : PETREL_TEMPFAIL;
	case A_DISCARD:
	case A_HOLD: {
		int v = r->action == A_DISCARD ? PETREL_DISCARD : PETREL_HOLD;
		if (!sj->t) {   /* no transaction yet: every one of the session */
			session_state(st, sj->s)->verdict = v;
			return PETREL_CONTINUE;
		}
		return v;
	}
	case A_REDIRECT:
		if (sj->message)
			return redirect_message(sj->t, r->arg, r->line);
		if (!sj->t) {   /* remembered; applied to each message */
			struct regex_session *ss = session_state(st, sj->s);
			free(ss->redirect);
			ss->redirect = xstrdup(r->arg);
		} else {
			struct regex_txn *ts = txn_state(st, sj->t);
			free(ts->redirect);
			ts->redirect = xstrdup(r->arg);
		}
		return PETREL_CONTINUE;
	case A_ADD:
		*decided = false;
		if (!sj->t)
			host->log(PETREL_LOG_WARN, "NOQUEUE: regex: rule %d: add needs a message: ignored",
			          r->line);
		else if (host->header_add(sj->t, r->add_name, r->add_value, 0) < 0)
			host->log(PETREL_LOG_WARN, "%s: regex: rule %d: cannot add header %s",
			          subj_qid(sj), r->line, r->add_name);
		return PETREL_CONTINUE;
	case A_REMOVE:
		*decided = false;
		if (sj->t && sj->header && host->header_remove(sj->t, sj->header, sj->occurrence) < 0)
			host->log(PETREL_LOG_WARN, "%s: regex: rule %d: cannot remove header %s",
			          subj_qid(sj), r->line, sj->header);
		return PETREL_CONTINUE;
	case A_LOG:
		*decided = false;
		return PETREL_CONTINUE;
	}
	return PETREL_CONTINUE;
}

/* Run every rule of 'target' over one subject, in file order, until one
 * decides.  Returns the verdict. */
static int judge(struct regex_state *st, enum target target, const struct subject *sj,
                 const char *subj, size_t len)
{
	for (int i = 0; i < st->nrules; i++) {
		struct rule *r = &st->rules[i];
		if (r->target != target || !rule_matches(st, r, subj, len, subj_qid(sj)))
			continue;
		bool decided;
		int v = act(st, r, sj, subj, len, &decided);
		if (decided)
			return v;
	}
	return PETREL_CONTINUE;
}

/* A pending redirect (from connect/HELO/MAIL/RCPT) applied to the message. */
static int apply_pending_redirect(struct regex_state *st, petrel_txn *t)
{
	void **tslot = host->txn_slot(t, st->conf);
	void **sslot = host->session_slot(host->txn_session(t), st->conf);
	struct regex_txn *ts = *tslot;
	struct regex_session *ss = *sslot;
	const char *to = ts && ts->redirect ? ts->redirect : ss && ss->redirect ? ss->redirect : NULL;
	if (!to)
		return PETREL_CONTINUE;
	if (redirect_now(t, to) < 0) {
		host->log(PETREL_LOG_ERROR, "%s: regex: redirect to <%s> failed: temporary failure",
		          host->txn_qid(t), to);
		(void)host->txn_reply(t, "451 4.3.0 Error: redirect failed, try again later");
		return PETREL_TEMPFAIL;
	}
	host->log(PETREL_LOG_INFO, "%s: regex: redirected to <%s>", host->txn_qid(t), to);
	return PETREL_CONTINUE;
}

/* ---- hooks ---- */

static int regex_connect(void *state, petrel_session *s)
{
	struct regex_state *st = state;
	if (!st->has[T_CLIENT])
		return PETREL_CONTINUE;
	const char *a = host->session_client_addr(s);
	struct subject sj = { .s = s, .what = "client" };
	return judge(st, T_CLIENT, &sj, a, strlen(a));
}

static int regex_helo(void *state, petrel_session *s, const char *helo)
{
	struct regex_state *st = state;
	if (!st->has[T_HELO] || !helo)
		return PETREL_CONTINUE;
	struct subject sj = { .s = s, .what = "helo" };
	return judge(st, T_HELO, &sj, helo, strlen(helo));
}

static int regex_mail(void *state, petrel_txn *t, petrel_addr *sender)
{
	struct regex_state *st = state;
	petrel_session *s = host->txn_session(t);
	if (st->has[T_SENDER]) {
		const char *a = host->addr_string(sender);
		struct subject sj = { .s = s, .t = t, .what = "sender" };
		int v = judge(st, T_SENDER, &sj, a, strlen(a));
		if (v != PETREL_CONTINUE)
			return v;
	}
	struct regex_session *ss = *host->session_slot(s, st->conf);
	if (ss && ss->verdict != PETREL_CONTINUE) {
		host->log(PETREL_LOG_INFO, "%s: regex: %s (decided at connect/helo)", host->txn_qid(t),
		          ss->verdict == PETREL_DISCARD ? "discard" : "hold");
		return ss->verdict;
	}
	return PETREL_CONTINUE;
}

static int regex_rcpt(void *state, petrel_txn *t, petrel_addr *rcpt)
{
	struct regex_state *st = state;
	if (!st->has[T_RECIPIENT])
		return PETREL_CONTINUE;
	const char *a = host->addr_string(rcpt);
	struct subject sj = { .s = host->txn_session(t), .t = t, .what = "recipient" };
	return judge(st, T_RECIPIENT, &sj, a, strlen(a));
}

static int regex_headers(void *state, petrel_txn *t)
{
	struct regex_state *st = state;
	int v = apply_pending_redirect(st, t);
	if (v != PETREL_CONTINUE || !st->has[T_HEADER])
		return v;
	int n = host->header_count(t);
	for (int i = 0; i < n; i++) {
		const char *name = host->header_name(t, i);
		const char *dec = host->header_decoded(t, i);
		if (!dec)
			dec = host->header_value(t, i);
		if (!name || !dec)
			continue;
		int occ = 0;
		for (int k = 0; k < i; k++)
			occ += !strcasecmp(host->header_name(t, k), name);
		char what[128];
		snprintf(what, sizeof what, "header %s", name);
		struct subject sj = { .s = host->txn_session(t), .t = t, .what = what,
		                      .header = name, .occurrence = occ, .message = true };
		size_t nl = strlen(name), dl = strlen(dec);
		char *whole = NULL;       /* "Name: value", made when needed */
		/* Both kinds of header rule, in file order. */
		for (int j = 0; j < st->nrules; j++) {
			struct rule *r = &st->rules[j];
			const char *subj;
			size_t len;
			if (r->target == T_HEADER && !strcasecmp(r->header, name)) {
				subj = dec;
				len = dl;
			} else if (r->target == T_HEADER_ANY) {
				if (!whole) {
					whole = xmalloc(nl + 2 + dl + 1);
					memcpy(whole, name, nl);
					memcpy(whole + nl, ": ", 2);
					memcpy(whole + nl + 2, dec, dl + 1);
				}
				subj = whole;
				len = nl + 2 + dl;
			} else {
				continue;
			}
			if (!rule_matches(st, r, subj, len, host->txn_qid(t)))
				continue;
			bool decided;
			v = act(st, r, &sj, subj, len, &decided);
			if (decided && v != PETREL_CONTINUE) {
				free(whole);
				return v;
			}
			if (decided)
				break;    /* this header is judged; on to the next */
		}
		free(whole);
	}
	return PETREL_CONTINUE;
}

static int regex_part(void *state, petrel_txn *t, petrel_part *p)
{
	struct regex_state *st = state;
	struct subject sj = { .s = host->txn_session(t), .t = t, .message = true };
	const char *ct = host->part_content_type(p);
	if (!ct || !*ct)
		ct = "text/plain";      /* RFC 2045 5.2 */
	int v;
	if (st->has[T_MIME_TYPE]) {
		sj.what = "mime-type";
		if ((v = judge(st, T_MIME_TYPE, &sj, ct, strlen(ct))) != PETREL_CONTINUE)
			return v;
	}
	if (host->part_is_multipart(p))
		return PETREL_CONTINUE;
	const char *fn = host->part_filename(p);
	if (st->has[T_FILENAME] && fn && *fn) {
		sj.what = "filename";
		if ((v = judge(st, T_FILENAME, &sj, fn, strlen(fn))) != PETREL_CONTINUE)
			return v;
	}
	if (!st->has[T_BODY] || strncasecmp(ct, "text/", 5))
		return PETREL_CONTINUE;
	size_t len = 0;
	const char *body = host->part_body(p, &len);
	if (!body)
		return PETREL_CONTINUE;
	if (st->body_limit > 0 && len > (size_t)st->body_limit)
		len = (size_t)st->body_limit;
	sj.what = "body";
	const char *end = body + len;
	for (const char *line = body; line < end;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *le = nl ? nl : end;
		size_t ll = (size_t)(le - line);
		if (ll && line[ll - 1] == '\r')
			ll--;
		if ((v = judge(st, T_BODY, &sj, line, ll)) != PETREL_CONTINUE)
			return v;
		line = nl ? nl + 1 : end;
	}
	return PETREL_CONTINUE;
}

static void regex_txn_end(void *state, petrel_txn *t)
{
	struct regex_state *st = state;
	void **slot = host->txn_slot(t, st->conf);
	struct regex_txn *ts = *slot;
	if (ts) {
		free(ts->redirect);
		free(ts);
		*slot = NULL;
	}
}

static void regex_session_end(void *state, petrel_session *s)
{
	struct regex_state *st = state;
	void **slot = host->session_slot(s, st->conf);
	struct regex_session *ss = *slot;
	if (ss) {
		free(ss->redirect);
		free(ss);
		*slot = NULL;
	}
}

/* ---- life cycle ---- */

static void regex_fini(void *state)
{
	struct regex_state *st = state;
	if (!st)
		return;
	for (int i = 0; i < st->nrules; i++)
		rule_free(&st->rules[i]);
	free(st->rules);
	pcre2_match_context_free(st->mctx);
	free(st->file);
	free(st);
}

static int regex_init(const struct petrel_host *h, petrel_conf *conf, void **state)
{
	host = h;
	const char *file = NULL;
	if (!host->conf_string(conf, "rules", &file) || !file || !*file) {
		host->conf_error(conf, "rules", "the rules file is required");
		return -1;
	}
	struct regex_state *st = xmalloc(sizeof *st);
	*st = (struct regex_state){ .conf = conf, .file = xstrdup(file),
	                            .body_limit = DEFAULT_BODY_LIMIT };
	long long lim;
	if (host->conf_int(conf, "body_size_limit", &lim)) {
		if (lim < 0) {
			host->conf_error(conf, "body_size_limit", "must be 0 (no limit) or more");
			regex_fini(st);
			return -1;
		}
		st->body_limit = lim;
	}
	st->mctx = pcre2_match_context_create(NULL);
	if (!st->mctx) {
		host->conf_error(conf, "rules", "out of memory");
		regex_fini(st);
		return -1;
	}
	pcre2_set_match_limit(st->mctx, MATCH_LIMIT);
	if (rules_load(st) < 0) {
		regex_fini(st);
		return -1;
	}
	host->log(PETREL_LOG_INFO, "regex: %d rule(s) from %s", st->nrules, st->file);
	*state = st;
	return 0;
}

static const struct petrel_setting regex_settings[] = {
	{ .name = "rules", .type = PETREL_SET_STRING, .required = 1,
	  .help = "the rules file: TARGET /PATTERN/FLAGS ACTION [ARGS] per line" },
	{ .name = "body_size_limit", .type = PETREL_SET_INT,
	  .help = "bytes of each text part's decoded body matched by body rules (0: all)" },
	{ .type = PETREL_SET_END },
};

static const struct petrel_hooks regex_hooks = {
	.connect = regex_connect,
	.helo = regex_helo,
	.mail = regex_mail,
	.rcpt = regex_rcpt,
	.headers = regex_headers,
	.part = regex_part,
	.txn_end = regex_txn_end,
	.session_end = regex_session_end,
};

PETREL_MODULE(
	.name = "regex",
	.version = "1.0",
	.summary = "header, body, MIME and envelope checks with PCRE2 rules",
	.settings = regex_settings,
	.init = regex_init,
	.fini = regex_fini,
	.filter = &regex_hooks,
);
