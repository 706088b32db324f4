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
 * see regex_rules.c and modules/regex/README.md.
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
#include "regex_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

const struct petrel_host *regex_host;

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
		regex_host->log(PETREL_LOG_WARN, "%s: regex: rule %d (%s:%d): %s: treated as no match",
		          qid, r->line, st->file, r->line, (char *)msg);
	}
	return false;
}

/*
 * The one way a string the peer chose (a subject, a header name) reaches
 * the log from this module: bounded, valid UTF-8 passed as it is, and
 * every control character -- C0 (CR, LF, ESC ...), DEL, C1 (U+0080 to
 * U+009F, which some terminals take as CSI) -- and every octet that is
 * not part of valid UTF-8 written as '?'.  A log line thus never holds a
 * line break or a terminal escape, whatever the mail holds.
 */
static void log_safe(char *out, size_t size, const char *s, size_t len)
{
	size_t o = 0, i = 0;
	while (i < len && o + 8 < size) {
		const unsigned char *u = (const unsigned char *)s + i;
		unsigned c = u[0];
		size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : (c & 0xF0) == 0xE0 ? 3
		         : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
		bool ok = n > 0 && n <= len - i;
		for (size_t k = 1; ok && k < n; k++)
			ok = (u[k] & 0xC0) == 0x80;
		if (ok && n == 3)               /* no overlong forms or surrogates */
			ok = !(c == 0xE0 && u[1] < 0xA0) && !(c == 0xED && u[1] >= 0xA0);
		if (ok && n == 4)
			ok = !(c == 0xF0 && u[1] < 0x90) && !(c == 0xF4 && u[1] >= 0x90);
		if (ok && n == 1)
			ok = c >= 0x20 && c != 0x7f;
		if (ok && n == 2)
			ok = !(c == 0xC2 && u[1] < 0xA0);       /* C1 controls */
		if (!ok) {
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, u, n);
		o += n;
		i += n;
	}
	if (i < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = 0;
}

static const char *subj_qid(const struct subject *sj)
{
	return sj->t ? regex_host->txn_qid(sj->t) : "NOQUEUE";
}

static void log_match(struct rule *r, const struct subject *sj, const char *subj, size_t len)
{
	char safe[LOG_SUBJECT_MAX + 4];
	log_safe(safe, sizeof safe, subj, len);
	if (r->action == A_LOG) {
		regex_host->log(PETREL_LOG_INFO, "%s: regex: rule %d matched %s: %s", subj_qid(sj), r->line,
		          sj->what, r->arg ? r->arg : safe);
		return;
	}
	regex_host->log(PETREL_LOG_INFO, "%s: regex: rule %d matched %s: %s%s%s (\"%s\")%s%s",
	          subj_qid(sj), r->line, sj->what, action_word(r->action),
	          r->action == A_ADD || r->arg ? " " : "",
	          r->action == A_ADD ? r->add_name : r->arg ? r->arg : "", safe,
	          sj->t ? "" : " from ", sj->t ? "" : regex_host->session_client_addr(sj->s));
}

static struct regex_session *session_state(struct regex_state *st, petrel_session *s)
{
	void **slot = regex_host->session_slot(s, st->conf);
	if (!*slot) {
		struct regex_session *ss = xmalloc(sizeof *ss);
		*ss = (struct regex_session){ .verdict = PETREL_CONTINUE };
		*slot = ss;
	}
	return *slot;
}

static struct regex_txn *txn_state(struct regex_state *st, petrel_txn *t)
{
	void **slot = regex_host->txn_slot(t, st->conf);
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
	int n = regex_host->rcpt_count(t);
	char **old = xmalloc((size_t)n * sizeof *old + 1);
	for (int i = 0; i < n; i++)
		old[i] = xstrdup(regex_host->rcpt_address(t, i));
	bool have = false;
	for (int i = 0; i < n; i++)
		have |= !strcasecmp(old[i], address);
	int rc = 0;
	/* Add first, so a failure leaves the message as it was; then drop
	 * the others one by one (remove(t, NULL) would drop the new one). */
	if (!have && regex_host->rcpt_add(t, address) < 0)
		rc = -1;
	for (int i = 0; i < n; i++) {
		if (!rc && strcasecmp(old[i], address))
			(void)regex_host->rcpt_remove(t, old[i]);
		free(old[i]);
	}
	free(old);
	return rc;
}

/* A redirect at the message stage; the verdict. */
static int redirect_message(petrel_txn *t, const char *to, int line)
{
	if (redirect_now(t, to) < 0) {
		regex_host->log(PETREL_LOG_ERROR, "%s: regex: rule %d: redirect to <%s> failed: "
		          "temporary failure", regex_host->txn_qid(t), line, to);
		(void)regex_host->txn_reply(t, "451 4.3.0 Error: redirect failed, try again later");
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
			(void)regex_host->txn_reply(sj->t, "%s", r->arg);
		else
			(void)regex_host->session_reply(sj->s, "%s", r->arg);
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
			regex_host->log(PETREL_LOG_WARN, "NOQUEUE: regex: rule %d: add needs a message: ignored",
			          r->line);
		else if (regex_host->header_add(sj->t, r->add_name, r->add_value, 0) < 0)
			regex_host->log(PETREL_LOG_WARN, "%s: regex: rule %d: cannot add header %s",
			          subj_qid(sj), r->line, r->add_name);
		return PETREL_CONTINUE;
	case A_REMOVE:
		*decided = false;
		if (sj->t && sj->header && regex_host->header_remove(sj->t, sj->header, sj->occurrence) < 0) {
			char name[LOG_SUBJECT_MAX + 4];
			log_safe(name, sizeof name, sj->header, strlen(sj->header));
			regex_host->log(PETREL_LOG_WARN, "%s: regex: rule %d: cannot remove header %s",
			          subj_qid(sj), r->line, name);
		}
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
	void **tslot = regex_host->txn_slot(t, st->conf);
	void **sslot = regex_host->session_slot(regex_host->txn_session(t), st->conf);
	struct regex_txn *ts = *tslot;
	struct regex_session *ss = *sslot;
	const char *to = ts && ts->redirect ? ts->redirect : ss && ss->redirect ? ss->redirect : NULL;
	if (!to)
		return PETREL_CONTINUE;
	if (redirect_now(t, to) < 0) {
		regex_host->log(PETREL_LOG_ERROR, "%s: regex: redirect to <%s> failed: temporary failure",
		          regex_host->txn_qid(t), to);
		(void)regex_host->txn_reply(t, "451 4.3.0 Error: redirect failed, try again later");
		return PETREL_TEMPFAIL;
	}
	regex_host->log(PETREL_LOG_INFO, "%s: regex: redirected to <%s>", regex_host->txn_qid(t), to);
	return PETREL_CONTINUE;
}

/* ---- hooks ---- */

static int regex_connect(void *state, petrel_session *s)
{
	struct regex_state *st = state;
	if (!st->has[T_CLIENT])
		return PETREL_CONTINUE;
	const char *a = regex_host->session_client_addr(s);
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
	petrel_session *s = regex_host->txn_session(t);
	if (st->has[T_SENDER]) {
		const char *a = regex_host->addr_string(sender);
		struct subject sj = { .s = s, .t = t, .what = "sender" };
		int v = judge(st, T_SENDER, &sj, a, strlen(a));
		if (v != PETREL_CONTINUE)
			return v;
	}
	struct regex_session *ss = *regex_host->session_slot(s, st->conf);
	if (ss && ss->verdict != PETREL_CONTINUE) {
		regex_host->log(PETREL_LOG_INFO, "%s: regex: %s (decided at connect/helo)", regex_host->txn_qid(t),
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
	const char *a = regex_host->addr_string(rcpt);
	struct subject sj = { .s = regex_host->txn_session(t), .t = t, .what = "recipient" };
	return judge(st, T_RECIPIENT, &sj, a, strlen(a));
}

/* Header names by index, for sorting. */
struct name_sort {
	const char *name;
	int index;
};

static int cmp_name(const void *a, const void *b)
{
	const struct name_sort *x = a, *y = b;
	int c = strcasecmp(x->name, y->name);
	return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* occ[i]: how many headers before i have header i's name (what remove
 * needs).  Sorted by name, not compared pairwise: O(n log n) for any
 * names the peer sends. */
static int *occurrences(petrel_txn *t, int n)
{
	struct name_sort *ns = xmalloc(((size_t)n + 1) * sizeof *ns);
	int *occ = xmalloc(((size_t)n + 1) * sizeof *occ);
	for (int i = 0; i < n; i++) {
		const char *name = regex_host->header_name(t, i);
		ns[i] = (struct name_sort){ .name = name ? name : "", .index = i };
	}
	qsort(ns, (size_t)n, sizeof *ns, cmp_name);
	for (int i = 0; i < n; i++)
		occ[ns[i].index] = i > 0 && !strcasecmp(ns[i - 1].name, ns[i].name)
		                   ? occ[ns[i - 1].index] + 1 : 0;
	free(ns);
	return occ;
}

static int regex_headers(void *state, petrel_txn *t)
{
	struct regex_state *st = state;
	int v = apply_pending_redirect(st, t);
	if (v != PETREL_CONTINUE || !st->has[T_HEADER])
		return v;
	int n = regex_host->header_count(t);
	int *occ = occurrences(t, n);
	for (int i = 0; i < n; i++) {
		const char *name = regex_host->header_name(t, i);
		const char *dec = regex_host->header_decoded(t, i);
		if (!dec)
			dec = regex_host->header_value(t, i);
		if (!name || !dec)
			continue;
		char what[128], safe[100];
		log_safe(safe, sizeof safe, name, strlen(name));
		snprintf(what, sizeof what, "header %s", safe);
		struct subject sj = { .s = regex_host->txn_session(t), .t = t, .what = what,
		                      .header = name, .occurrence = occ[i], .message = true };
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
			if (!rule_matches(st, r, subj, len, regex_host->txn_qid(t)))
				continue;
			bool decided;
			v = act(st, r, &sj, subj, len, &decided);
			if (decided && v != PETREL_CONTINUE) {
				free(whole);
				free(occ);
				return v;
			}
			if (decided)
				break;    /* this header is judged; on to the next */
		}
		free(whole);
	}
	free(occ);
	return PETREL_CONTINUE;
}

static int regex_part(void *state, petrel_txn *t, petrel_part *p)
{
	struct regex_state *st = state;
	struct subject sj = { .s = regex_host->txn_session(t), .t = t, .message = true };
	const char *ct = regex_host->part_content_type(p);
	if (!ct || !*ct)
		ct = "text/plain";      /* RFC 2045 5.2 */
	int v;
	if (st->has[T_MIME_TYPE]) {
		sj.what = "mime-type";
		if ((v = judge(st, T_MIME_TYPE, &sj, ct, strlen(ct))) != PETREL_CONTINUE)
			return v;
	}
	if (regex_host->part_is_multipart(p))
		return PETREL_CONTINUE;
	const char *fn = regex_host->part_filename(p);
	if (st->has[T_FILENAME] && fn && *fn) {
		sj.what = "filename";
		if ((v = judge(st, T_FILENAME, &sj, fn, strlen(fn))) != PETREL_CONTINUE)
			return v;
	}
	if (!st->has[T_BODY] || strncasecmp(ct, "text/", 5))
		return PETREL_CONTINUE;
	size_t len = 0;
	const char *body = regex_host->part_body(p, &len);
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
	void **slot = regex_host->txn_slot(t, st->conf);
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
	void **slot = regex_host->session_slot(s, st->conf);
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
	/* the JIT keeps freed code memory for reuse; a reload may unload
	 * libpcre2 with the module, and that memory would stay mapped */
	pcre2_jit_free_unused_memory(NULL);
}

static int regex_init(const struct petrel_host *h, petrel_conf *conf, void **state)
{
	regex_host = h;
	const char *file = NULL;
	if (!regex_host->conf_string(conf, "rules", &file) || !file || !*file) {
		regex_host->conf_error(conf, "rules", "the rules file is required");
		return -1;
	}
	struct regex_state *st = xmalloc(sizeof *st);
	*st = (struct regex_state){ .conf = conf, .file = xstrdup(file),
	                            .body_limit = DEFAULT_BODY_LIMIT };
	long long lim;
	if (regex_host->conf_int(conf, "body_size_limit", &lim)) {
		if (lim < 0) {
			regex_host->conf_error(conf, "body_size_limit", "must be 0 (no limit) or more");
			regex_fini(st);
			return -1;
		}
		st->body_limit = lim;
	}
	st->mctx = pcre2_match_context_create(NULL);
	if (!st->mctx) {
		regex_host->conf_error(conf, "rules", "out of memory");
		regex_fini(st);
		return -1;
	}
	pcre2_set_match_limit(st->mctx, MATCH_LIMIT);
	if (rules_load(st) < 0) {
		regex_fini(st);
		return -1;
	}
	regex_host->log(PETREL_LOG_INFO, "regex: %d rule(s) from %s", st->nrules, st->file);
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
