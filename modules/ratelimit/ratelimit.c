/*
 * ratelimit.c - the "ratelimit" filter: sending limits per sender, client
 * and authenticated user, and recipients per message ("SMTP also means
 * stop").
 *
 *   modules = { ratelimit = {
 *     state_file = "/var/spool/petrel/ratelimit.state";
 *     limits = [ "sender 100/hour", "sender 1000/day", "client 500/hour",
 *                "user 200/day", "recipients 50/message" ];
 *     overrides = [ "alice@example.org: sender 10/hour, recipients 5/message",
 *                   "example.net: sender 500/day" ];
 *     reply = "450 4.7.1";              # message-rate refusals
 *     recipients_reply = "452 4.5.3";   # recipients-per-message refusals
 *   }; };
 *
 * Keys: sender (the envelope sender, lower-cased; <> is never limited),
 * client (the client IP), user (the AUTH login; no limit applies to a
 * session that did not authenticate), recipients (per message).  Windows:
 * hour and day, as a two-bucket sliding approximation (ratelimit_store.h).
 *
 * An override "WHO: limit, limit" replaces the global limit of the same
 * key and window for mail that WHO matches; the other global limits still
 * apply.  WHO matches the AUTH login, the sender address, the client IP or
 * the sender domain, exactly (case-insensitive); when several overrides
 * set the same limit the most specific match wins, in that order (login,
 * address, IP, domain), then the first one written.
 *
 * Where: rate limits are checked at MAIL (the limit already reached: the
 * configured 'reply', 450 4.7.1 by default); recipients at RCPT ('452
 * 4.5.3').  A message is counted once, when it is queued, for each key that
 * has a rate limit.  Transactions between MAIL and queueing hold a place,
 * so concurrent sessions cannot overshoot.
 *
 * Persistence: the counters that changed are appended to state_file.log
 * at most about once a second (a timer; the loop's cost is what changed,
 * not the table); a journal past JOURNAL_MAX bytes is merged into the
 * snapshot state_file on a filter thread (host->work_submit), and the
 * whole table is written to state_file at shutdown.  All of it is loaded
 * at start (ratelimit_store.h).  A missing file is empty; a corrupt one is
 * logged and ignored.
 *
 * Logs: refusals (info), state file problems (warn).
 */
#include <petrel/petrel.h>

#include "ratelimit_store.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FLUSH_MS 1000
#define JOURNAL_MAX (256 * 1024)   /* then merged into the snapshot, off the loop */
#define SWEEP_BUCKETS 256          /* expired entries looked for per flush */
#define MAX_LIMIT 1000000000LL

/* What can be limited; a rate key has an hour and a day limit. */
enum rl_key { KEY_SENDER = 0, KEY_CLIENT, KEY_USER, NRATEKEYS };
#define SLOT(key, win) ((key) * RL_NWINDOWS + (win))
#define SLOT_RECIPIENTS (NRATEKEYS * RL_NWINDOWS)
#define NSLOTS (SLOT_RECIPIENTS + 1)

static const char *const key_names[NRATEKEYS] = {
	[KEY_SENDER] = "sender", [KEY_CLIENT] = "client", [KEY_USER] = "user",
};
static const char key_prefix[NRATEKEYS] = {
	[KEY_SENDER] = 's', [KEY_CLIENT] = 'c', [KEY_USER] = 'u',
};
static const char *const window_names[RL_NWINDOWS] = {
	[RL_HOUR] = "hour", [RL_DAY] = "day",
};

struct limits {
	long long n[NSLOTS];      /* -1: not set */
};

/* How an override matched: higher is more specific. */
enum match_rank { MATCH_NONE = 0, MATCH_DOMAIN, MATCH_IP, MATCH_ADDRESS, MATCH_LOGIN };

struct override {
	char *who;                /* lower-case */
	struct limits lim;
};

struct reply_code {
	char code[4];             /* "450" */
	char enh[16];             /* "4.7.1" */
};

struct ratelimit {
	const struct petrel_host *host;
	petrel_conf *conf;
	const char *state_file;   /* the host's string, lives as long as we do */
	struct reply_code reply, rcpt_reply;
	struct limits global;
	struct override *overrides;
	int noverrides;
	struct rl_store store;
	int dirty;                /* counted since the last journal write */
	int changed;              /* counted since start: a snapshot is owed at exit */
	int timer_armed;
	int save_failing;         /* log a failing save once, not every second */
	int journal_fd;           /* state_file.log, open for appending; -1 */
	long journal_bytes;
	int compacting;           /* a merge is on a filter thread */
};

/* A merge of state_file and state_file.log.old on a filter thread. */
struct compaction {
	struct ratelimit *rl;
	char *path;
	int failed;
	char err[512];
};

/* Per transaction (txn slot). */
struct txn_state {
	struct limits eff;                    /* limits in force for this message */
	struct rl_entry *held[NRATEKEYS];     /* counters held for queueing */
	int counted;
};

/* ---- configuration ---- */

static void limits_clear(struct limits *l)
{
	for (int i = 0; i < NSLOTS; i++)
		l->n[i] = -1;
}

static const char *skip_space(const char *p)
{
	while (isspace((unsigned char)*p))
		p++;
	return p;
}

/* "sender 100/hour" (n bytes of s) into l; -1 with a reason in err. */
static int parse_limit(const char *s, size_t n, struct limits *l, char *err, size_t errlen)
{
	char buf[128];
	if (n >= sizeof buf) {
		snprintf(err, errlen, "too long");
		return -1;
	}
	memcpy(buf, s, n);
	buf[n] = 0;
	const char *p = skip_space(buf);
	const char *kw = p;
	while (isalpha((unsigned char)*p))
		p++;
	size_t kwlen = (size_t)(p - kw);
	if (!kwlen) {
		snprintf(err, errlen, "expected \"KEY N/WINDOW\", e.g. \"sender 100/hour\"");
		return -1;
	}
	int key = -1, recipients = 0;
	for (int k = 0; k < NRATEKEYS; k++)
		if (strlen(key_names[k]) == kwlen && !strncasecmp(kw, key_names[k], kwlen))
			key = k;
	if (kwlen == 10 && !strncasecmp(kw, "recipients", 10))
		recipients = 1;
	if (key < 0 && !recipients) {
		snprintf(err, errlen, "unknown key '%.*s' (sender, client, user or recipients)",
		         (int)kwlen, kw);
		return -1;
	}
	p = skip_space(p);
	if (!isdigit((unsigned char)*p)) {
		snprintf(err, errlen, "expected a number after '%.*s'", (int)kwlen, kw);
		return -1;
	}
	errno = 0;
	char *end;
	long long v = strtoll(p, &end, 10);
	if (errno || v < 0 || v > MAX_LIMIT) {
		snprintf(err, errlen, "the number must be from 0 to %lld", MAX_LIMIT);
		return -1;
	}
	p = skip_space(end);
	if (*p++ != '/') {
		snprintf(err, errlen, "expected '/' and a window after the number");
		return -1;
	}
	p = skip_space(p);
	const char *win = p;
	while (isalpha((unsigned char)*p))
		p++;
	size_t winlen = (size_t)(p - win);
	if (*skip_space(p)) {
		snprintf(err, errlen, "unexpected '%s' after the window", skip_space(p));
		return -1;
	}
	int slot = -1;
	if (recipients) {
		if (winlen == 7 && !strncasecmp(win, "message", 7))
			slot = SLOT_RECIPIENTS;
		else {
			snprintf(err, errlen, "recipients are limited per message (\"recipients N/message\")");
			return -1;
		}
	} else {
		for (int w = 0; w < RL_NWINDOWS; w++)
			if (strlen(window_names[w]) == winlen && !strncasecmp(win, window_names[w], winlen))
				slot = SLOT(key, w);
		if (slot < 0) {
			snprintf(err, errlen, "unknown window '%.*s' for %s (hour or day)",
			         (int)winlen, win, key_names[key]);
			return -1;
		}
	}
	if (l->n[slot] >= 0) {
		snprintf(err, errlen, "the same limit is given twice");
		return -1;
	}
	l->n[slot] = v;
	return 0;
}

static char *lower_dup(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (!p)
		return NULL;
	for (size_t i = 0; i < n; i++)
		p[i] = (char)tolower((unsigned char)s[i]);
	p[n] = 0;
	return p;
}

/* "who: limit, limit" */
static int parse_override(struct ratelimit *rl, const char *line)
{
	const struct petrel_host *host = rl->host;
	const char *colon = strchr(line, ':');
	const char *w = skip_space(line);
	size_t wlen = colon ? (size_t)(colon - w) : 0;
	while (wlen && isspace((unsigned char)w[wlen - 1]))
		wlen--;
	if (!colon || !wlen || colon < w) {
		host->conf_error(rl->conf, "overrides",
		                 "'%s': expected \"WHO: limit, limit\" (WHO a login, address, IP or domain)", line);
		return -1;
	}
	for (size_t i = 0; i < wlen; i++)
		if (isspace((unsigned char)w[i])) {
			host->conf_error(rl->conf, "overrides", "'%s': '%.*s' has a space in it",
			                 line, (int)wlen, w);
			return -1;
		}
	struct override o = { .who = lower_dup(w, wlen) };
	if (!o.who)
		return -1;
	limits_clear(&o.lim);
	int nlimits = 0;
	for (const char *p = colon + 1; *p;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		char err[200];
		if (parse_limit(p, n, &o.lim, err, sizeof err) < 0) {
			const char *q = skip_space(p);
			size_t qn = n - (size_t)(q - p);
			while (qn && isspace((unsigned char)q[qn - 1]))
				qn--;
			host->conf_error(rl->conf, "overrides", "'%s': '%.*s': %s", line, (int)qn, q, err);
			free(o.who);
			return -1;
		}
		nlimits++;
		p += n + (comma ? 1 : 0);
	}
	if (!nlimits) {
		host->conf_error(rl->conf, "overrides", "'%s': no limit after the ':'", line);
		free(o.who);
		return -1;
	}
	struct override *v = realloc(rl->overrides, (size_t)(rl->noverrides + 1) * sizeof *v);
	if (!v) {
		free(o.who);
		return -1;
	}
	rl->overrides = v;
	rl->overrides[rl->noverrides++] = o;
	return 0;
}

/* "450 4.7.1": a 4xx/5xx code and an enhanced code of the same class. */
static int parse_reply(struct ratelimit *rl, const char *name, const char *dflt,
                       struct reply_code *out)
{
	const char *s = dflt;
	rl->host->conf_string(rl->conf, name, &s);
	int c1, c2, c3, a, b, c, len = 0;
	if (sscanf(s, "%1d%1d%1d %d.%d.%d%n", &c1, &c2, &c3, &a, &b, &c, &len) != 6 ||
	    s[len] || (c1 != 4 && c1 != 5) || a != c1 || b < 0 || b > 999 || c < 0 || c > 999 ||
	    s[3] != ' ') {
		rl->host->conf_error(rl->conf, name, "'%s': expected a 4xx or 5xx code and the "
		                     "enhanced code of the same class, e.g. \"%s\"", s, dflt);
		return -1;
	}
	snprintf(out->code, sizeof out->code, "%d%d%d", c1, c2, c3);
	snprintf(out->enh, sizeof out->enh, "%d.%d.%d", a, b, c);
	return 0;
}

static int ratelimit_init(const struct petrel_host *host, petrel_conf *conf, void **state)
{
	struct ratelimit *rl = calloc(1, sizeof *rl);
	if (!rl)
		return -1;
	*state = rl;
	rl->host = host;
	rl->conf = conf;
	rl->journal_fd = -1;
	limits_clear(&rl->global);
	if (!host->conf_string(conf, "state_file", &rl->state_file) || !*rl->state_file) {
		host->conf_error(conf, "state_file", "required: the file where counters persist");
		return -1;
	}
	if (rl->state_file[0] != '/') {
		host->conf_error(conf, "state_file", "'%s': must be an absolute path", rl->state_file);
		return -1;
	}
	const char *slash = strrchr(rl->state_file, '/');
	char *dir = strndup(rl->state_file, slash == rl->state_file ? 1 : (size_t)(slash - rl->state_file));
	struct stat st;
	/* Only a warning: the spool, a natural home for it, is created by
	 * the daemon after init() on a first start. */
	if (dir && (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)))
		host->log(PETREL_LOG_WARN, "ratelimit: state_file %s: directory %s does not exist "
		          "(yet): counters are not saved until it does", rl->state_file, dir);
	free(dir);
	int n = host->conf_list_count(conf, "limits");
	for (int i = 0; i < n; i++) {
		const char *s = host->conf_list_string(conf, "limits", i);
		char err[200];
		if (!s || parse_limit(s, strlen(s), &rl->global, err, sizeof err) < 0) {
			host->conf_error(conf, "limits", "'%s': %s", s ? s : "", s ? err : "not a string");
			return -1;
		}
	}
	n = host->conf_list_count(conf, "overrides");
	for (int i = 0; i < n; i++) {
		const char *s = host->conf_list_string(conf, "overrides", i);
		if (!s) {
			host->conf_error(conf, "overrides", "entry %d is not a string", i + 1);
			return -1;
		}
		if (parse_override(rl, s) < 0)
			return -1;
	}
	if (parse_reply(rl, "reply", "450 4.7.1", &rl->reply) < 0 ||
	    parse_reply(rl, "recipients_reply", "452 4.5.3", &rl->rcpt_reply) < 0)
		return -1;
	char err[512];
	if (rl_store_load(&rl->store, rl->state_file, time(NULL), err, sizeof err) < 0)
		host->log(PETREL_LOG_WARN, "ratelimit: %s: ignored, starting with empty counters", err);
	return 0;
}

/* ---- counters and their file ---- */

static void save_failed(struct ratelimit *rl, const char *err)
{
	if (!rl->save_failing)
		rl->host->log(PETREL_LOG_WARN, "ratelimit: cannot save counters: %s", err);
	rl->save_failing = 1;
}

static void compact_work(void *arg)
{
	struct compaction *c = arg;
	c->failed = rl_store_compact(c->path, time(NULL), c->err, sizeof c->err) < 0;
}

static void compact_done(void *arg)
{
	struct compaction *c = arg;
	c->rl->compacting = 0;
	if (c->failed)
		c->rl->host->log(PETREL_LOG_WARN, "ratelimit: cannot merge the journal into %s: %s "
		                 "(kept; tried again later)", c->path, c->err);
	free(c->path);
	free(c);
}

/* The journal is big: move it aside and merge it on a filter thread.
 * A journal.old left by a failed merge is merged first. */
static void compact(struct ratelimit *rl)
{
	char *log = NULL, *old = NULL;
	struct compaction *c = calloc(1, sizeof *c);
	if (!c || asprintf(&log, "%s.log", rl->state_file) < 0 ||
	    asprintf(&old, "%s.log.old", rl->state_file) < 0)
		goto out;
	if (access(old, F_OK) < 0) {
		if (rename(log, old) < 0)
			goto out;
		close(rl->journal_fd);
		rl->journal_fd = -1;   /* a new one at the next write */
	}
	c->rl = rl;
	c->path = strdup(rl->state_file);
	if (c->path && rl->host->work_submit(rl->conf, compact_work, compact_done, c) == 0) {
		rl->compacting = 1;
		c = NULL;
	}
out:
	if (c)
		free(c->path);
	free(c);
	free(log);
	free(old);
}

/* Append what changed to the journal (on the loop: the changed entries
 * only). */
static void save_now(struct ratelimit *rl)
{
	char err[512];
	if (rl->journal_fd < 0) {
		char *log = NULL;
		if (asprintf(&log, "%s.log", rl->state_file) < 0)
			return;
		int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		struct stat sb;
		if (fd < 0 || fstat(fd, &sb) < 0) {
			snprintf(err, sizeof err, "%s: %s", log, strerror(errno));
			if (fd >= 0)
				close(fd);
			free(log);
			save_failed(rl, err);
			return;             /* stays dirty: the next message retries */
		}
		free(log);
		rl->journal_fd = fd;
		rl->journal_bytes = (long)sb.st_size;
		if (sb.st_size == 0) {
			char magic[64];
			int n = snprintf(magic, sizeof magic, "%s\n", rl_journal_magic);
			if (write(fd, magic, (size_t)n) != n) {
				snprintf(err, sizeof err, "%s.log: %s", rl->state_file, strerror(errno));
				save_failed(rl, err);
				close(fd);
				rl->journal_fd = -1;
				return;
			}
			rl->journal_bytes = n;
		}
	}
	long n = rl_store_journal(&rl->store, rl->journal_fd, err, sizeof err);
	if (n < 0) {
		char msg[600];
		snprintf(msg, sizeof msg, "%s.log: %s", rl->state_file, err);
		save_failed(rl, msg);
		return;
	}
	rl->journal_bytes += n;
	if (rl->save_failing)
		rl->host->log(PETREL_LOG_INFO, "ratelimit: counters saved to %s again", rl->state_file);
	rl->save_failing = 0;
	rl->dirty = 0;
	if (rl->journal_bytes > JOURNAL_MAX && !rl->compacting)
		compact(rl);
}

static void flush_timer(void *arg)
{
	struct ratelimit *rl = arg;
	rl->timer_armed = 0;
	rl_store_sweep(&rl->store, time(NULL), SWEEP_BUCKETS);
	if (rl->dirty)
		save_now(rl);
}

static void mark_dirty(struct ratelimit *rl)
{
	rl->dirty = 1;
	rl->changed = 1;
	if (rl->timer_armed)
		return;
	if (rl->host->timer_add(rl->conf, FLUSH_MS, flush_timer, rl))
		rl->timer_armed = 1;
	else
		save_now(rl);       /* no timer: write through */
}

static void ratelimit_fini(void *state)
{
	struct ratelimit *rl = state;
	if (!rl)
		return;
	/* The host has dropped our timers and finished our merges by now:
	 * off the loop, the whole table goes to the snapshot (and the
	 * journals, merged in it, go); if that fails, to the journal. */
	char err[512];
	if (rl->changed && !rl->compacting &&
	    rl_store_save(&rl->store, rl->state_file, time(NULL), err, sizeof err) < 0) {
		rl->host->log(PETREL_LOG_WARN, "ratelimit: cannot save counters: %s", err);
		if (rl->dirty)
			save_now(rl);
	}
	if (rl->journal_fd >= 0)
		close(rl->journal_fd);
	rl_store_free(&rl->store);
	for (int i = 0; i < rl->noverrides; i++)
		free(rl->overrides[i].who);
	free(rl->overrides);
	free(rl);
}

/* ---- the limits of one message ---- */

static enum match_rank override_rank(const struct override *o, const char *login,
                                     const char *sender, const char *ip, const char *domain)
{
	if (login && !strcasecmp(o->who, login))
		return MATCH_LOGIN;
	if (*sender && !strcasecmp(o->who, sender))
		return MATCH_ADDRESS;
	if (ip && !strcasecmp(o->who, ip))
		return MATCH_IP;
	if (*domain && !strcasecmp(o->who, domain))
		return MATCH_DOMAIN;
	return MATCH_NONE;
}

static void resolve(struct ratelimit *rl, const char *login, const char *sender,
                    const char *ip, const char *domain, struct limits *out)
{
	*out = rl->global;
	int best[NSLOTS] = {0};
	for (int i = 0; i < rl->noverrides; i++) {
		const struct override *o = &rl->overrides[i];
		int rank = (int)override_rank(o, login, sender, ip, domain);
		if (rank == MATCH_NONE)
			continue;
		for (int k = 0; k < NSLOTS; k++)
			if (o->lim.n[k] >= 0 && rank > best[k]) {
				best[k] = rank;
				out->n[k] = o->lim.n[k];
			}
	}
}

static int key_limited(const struct limits *l, int key)
{
	for (int w = 0; w < RL_NWINDOWS; w++)
		if (l->n[SLOT(key, w)] >= 0)
			return 1;
	return 0;
}

/* The transaction's state, built at first use: its limits and the
 * counters of its keys (not yet held). */
static struct txn_state *txn_state(struct ratelimit *rl, petrel_txn *t)
{
	const struct petrel_host *host = rl->host;
	void **slot = host->txn_slot(t, rl->conf);
	if (*slot)
		return *slot;
	struct txn_state *ts = calloc(1, sizeof *ts);
	if (!ts)
		return NULL;
	petrel_session *s = host->txn_session(t);
	petrel_addr *sa = host->txn_sender(t);
	const char *sender = host->addr_string(sa);
	const char *login = host->session_auth_user(s);
	const char *ip = host->session_client_addr(s);
	char *lsender = lower_dup(sender, strlen(sender));
	if (!lsender) {
		free(ts);
		return NULL;
	}
	resolve(rl, login, lsender, ip, host->addr_domain(sa), &ts->eff);
	const char *ids[NRATEKEYS] = {
		[KEY_SENDER] = *lsender ? lsender : NULL,   /* <> is never limited */
		[KEY_CLIENT] = ip && *ip ? ip : NULL,
		[KEY_USER] = login && *login ? login : NULL,
	};
	for (int k = 0; k < NRATEKEYS; k++) {
		if (!ids[k] || !key_limited(&ts->eff, k))
			continue;
		size_t len = strlen(ids[k]);
		char *key = malloc(len + 3);
		if (!key)
			continue;
		key[0] = key_prefix[k];
		key[1] = ':';
		memcpy(key + 2, ids[k], len + 1);
		ts->held[k] = rl_store_get(&rl->store, key, 1);
		if (ts->held[k])
			rl_store_hold(ts->held[k]);
		free(key);
	}
	free(lsender);
	*slot = ts;
	return ts;
}

static void txn_state_free(struct ratelimit *rl, petrel_txn *t)
{
	void **slot = rl->host->txn_slot(t, rl->conf);
	struct txn_state *ts = *slot;
	if (!ts)
		return;
	time_t now = time(NULL);
	for (int k = 0; k < NRATEKEYS; k++)
		rl_store_release(&rl->store, &ts->held[k], now);
	free(ts);
	*slot = NULL;
}

static int refuse(struct ratelimit *rl, petrel_txn *t, const struct reply_code *rc,
                  const char *fmt, ...) PETREL_PRINTF(4, 5);

static int refuse(struct ratelimit *rl, petrel_txn *t, const struct reply_code *rc,
                  const char *fmt, ...)
{
	char text[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	rl->host->txn_reply(t, "%s %s %s", rc->code, rc->enh, text);
	return rc->code[0] == '5' ? PETREL_REJECT : PETREL_TEMPFAIL;
}

/* ---- hooks ---- */

static int ratelimit_mail(void *state, petrel_txn *t, petrel_addr *sender)
{
	struct ratelimit *rl = state;
	const struct petrel_host *host = rl->host;
	struct txn_state *ts = txn_state(rl, t);
	if (!ts) {
		host->txn_reply(t, "451 4.3.0 Temporary failure: out of memory");
		return PETREL_TEMPFAIL;
	}
	time_t now = time(NULL);
	for (int k = 0; k < NRATEKEYS; k++) {
		struct rl_entry *e = ts->held[k];
		if (!e)
			continue;
		for (int w = 0; w < RL_NWINDOWS; w++) {
			long long lim = ts->eff.n[SLOT(k, w)];
			if (lim < 0)
				continue;
			/* our own hold is not a message sent yet */
			unsigned long used = rl_entry_estimate(e, (enum rl_window)w, now) - 1;
			if ((long long)used < lim)
				continue;
			const char *addr = host->addr_string(sender);
			petrel_session *s = host->txn_session(t);
			const char *login = host->session_auth_user(s);
			/* the login too: with a user limit it is what was counted */
			host->log(PETREL_LOG_INFO, "ratelimit: refused MAIL FROM:<%s> from %s: "
			          "%s %lld/%s reached (%lu)%s%s", addr, host->session_client_addr(s),
			          key_names[k], lim, window_names[w], used,
			          login ? ", sasl_username=" : "", login ? login : "");
			int v;
			if (k == KEY_SENDER)
				v = refuse(rl, t, &rl->reply, "<%s>: too many messages from this sender "
				           "(%lld/%s)", addr, lim, window_names[w]);
			else if (k == KEY_CLIENT)
				v = refuse(rl, t, &rl->reply, "too many messages from this client [%s] "
				           "(%lld/%s)", host->session_client_addr(s), lim, window_names[w]);
			else
				v = refuse(rl, t, &rl->reply, "too many messages from this user "
				           "(%lld/%s)", lim, window_names[w]);
			txn_state_free(rl, t);
			return v;
		}
	}
	return PETREL_CONTINUE;
}

static int ratelimit_rcpt(void *state, petrel_txn *t, petrel_addr *rcpt)
{
	struct ratelimit *rl = state;
	const struct petrel_host *host = rl->host;
	struct txn_state *ts = txn_state(rl, t);
	if (!ts) {
		host->txn_reply(t, "451 4.3.0 Temporary failure: out of memory");
		return PETREL_TEMPFAIL;
	}
	long long lim = ts->eff.n[SLOT_RECIPIENTS];
	if (lim < 0 || host->rcpt_count(t) < lim)
		return PETREL_CONTINUE;
	const char *sender = host->addr_string(host->txn_sender(t));
	host->log(PETREL_LOG_INFO, "ratelimit: refused RCPT TO:<%s> for <%s>: recipients %lld/message",
	          host->addr_string(rcpt), sender, lim);
	return refuse(rl, t, &rl->rcpt_reply, "<%s>: too many recipients for this sender "
	              "(%lld/message)", sender, lim);
}

static void ratelimit_queued(void *state, petrel_txn *t)
{
	struct ratelimit *rl = state;
	struct txn_state *ts = txn_state(rl, t);
	if (!ts || ts->counted)
		return;
	ts->counted = 1;
	time_t now = time(NULL);
	int any = 0;
	for (int k = 0; k < NRATEKEYS; k++) {
		if (!ts->held[k])
			continue;
		rl_entry_count(ts->held[k], now);
		rl_store_mark(&rl->store, ts->held[k]);
		rl_store_release(&rl->store, &ts->held[k], now);   /* counted now */
		any = 1;
	}
	if (any)
		mark_dirty(rl);
}

static void ratelimit_txn_end(void *state, petrel_txn *t)
{
	txn_state_free(state, t);
}

static const struct petrel_setting ratelimit_settings[] = {
	{ .name = "state_file", .type = PETREL_SET_STRING, .required = 1,
	  .help = "absolute path of the file where the counters persist" },
	{ .name = "limits", .type = PETREL_SET_STRING_LIST,
	  .help = "\"KEY N/WINDOW\": sender|client|user N/hour|day, recipients N/message" },
	{ .name = "overrides", .type = PETREL_SET_STRING_LIST,
	  .help = "\"WHO: limit, limit\": WHO a login, sender address, client IP or sender domain" },
	{ .name = "reply", .type = PETREL_SET_STRING,
	  .help = "code and enhanced code refusing a message over a rate (default \"450 4.7.1\")" },
	{ .name = "recipients_reply", .type = PETREL_SET_STRING,
	  .help = "code and enhanced code refusing a recipient over the limit (default \"452 4.5.3\")" },
	{ .type = PETREL_SET_END },
};

static const struct petrel_hooks ratelimit_hooks = {
	.mail = ratelimit_mail,
	.rcpt = ratelimit_rcpt,
	.queued = ratelimit_queued,
	.txn_end = ratelimit_txn_end,
};

PETREL_MODULE(
	.name = "ratelimit",
	.version = "1.0",
	.summary = "messages per hour/day per sender, client and user; recipients per message",
	.settings = ratelimit_settings,
	.init = ratelimit_init,
	.fini = ratelimit_fini,
	.filter = &ratelimit_hooks,
);
