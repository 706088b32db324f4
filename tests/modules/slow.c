/*
 * slow.c - the "slow" test module: a filter whose hook waits on a timer.
 *
 * Its eom hook (or rcpt hook, with at = "rcpt", or auth hook, with
 * at = "auth": then qid=auth in the logs) suspends the session
 * (host->suspend), returns PETREL_PENDING, and a timer of delay_ms
 * milliseconds resumes it (host->resume) with the configured verdict.
 * The black-box tests use it to show that a slow filter holds up only
 * its own session, and that pending_timeout turns a hook that waits too
 * long into "451 4.7.1".
 *
 * With only_rcpt set, only transactions for that recipient wait.
 *
 * With wait = "work" (API 1.1) the wait is not a timer but blocking work:
 * a job sleeps delay_ms on the daemon's filter thread pool
 * (host->work_submit), and its done() resumes the session.
 *
 * Logs "slow: suspend qid=Q at=eom delay_ms=N" and
 * "slow: resume qid=Q verdict=V resume=R" (R is -1 when the core gave up
 * waiting first).
 *
 * Memory: one small record per suspension, on a list owned by the module
 * state; the timer callback frees it, fini frees what never fired.
 */
#include <petrel/petrel.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct wait {
	struct slow *sl;
	unsigned long long pending;     /* host->suspend's id */
	char qid[64];
	struct wait *prev, *next;
};

struct slow {
	const struct petrel_host *host;
	petrel_conf *self;
	long long delay_ms;
	int verdict;
	int at_rcpt;
	int at_auth;
	int by_work;          /* wait = "work": block a pool thread, not a timer */
	const char *reply;
	const char *only_rcpt;
	struct wait *waits;
};

static const char *const verdicts[] = {
	[PETREL_CONTINUE] = "continue", [PETREL_ACCEPT] = "accept",
	[PETREL_REJECT] = "reject",     [PETREL_TEMPFAIL] = "tempfail",
	[PETREL_DISCARD] = "discard",   [PETREL_HOLD] = "hold",
};

static void unlink_wait(struct wait *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		w->sl->waits = w->next;
	if (w->next)
		w->next->prev = w->prev;
}

static void wake(void *arg)
{
	struct wait *w = arg;
	struct slow *sl = w->sl;
	unlink_wait(w);
	int r = sl->host->resume(sl->self, w->pending, sl->verdict);
	sl->host->log(PETREL_LOG_INFO, "slow: resume qid=%s verdict=%s resume=%d", w->qid,
	              verdicts[sl->verdict], r);
	free(w);
}

/* On a pool thread: the kind of call a real filter makes (a blocking
 * socket, a scan), here a sleep.  Touches nothing but its record. */
static void block(void *arg)
{
	struct wait *w = arg;
	struct timespec ts = { .tv_sec = w->sl->delay_ms / 1000,
	                       .tv_nsec = (w->sl->delay_ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
	w->sl->host->log(PETREL_LOG_INFO, "slow: work done qid=%s", w->qid);
}

/* Suspend session s until the timer or the work; label names it in the logs. */
static int slow_suspend(struct slow *sl, petrel_session *s, const char *label, const char *at)
{
	const struct petrel_host *h = sl->host;
	struct wait *w = calloc(1, sizeof *w);
	if (!w)
		return PETREL_TEMPFAIL;
	w->sl = sl;
	snprintf(w->qid, sizeof w->qid, "%s", label);
	w->pending = h->suspend(s);
	int ok = sl->by_work ? h->work_submit(sl->self, block, wake, w) == 0
	                     : h->timer_add(sl->self, (unsigned long long)sl->delay_ms, wake, w) != 0;
	if (!ok) {
		free(w);
		return PETREL_TEMPFAIL;
	}
	w->next = sl->waits;
	if (sl->waits)
		sl->waits->prev = w;
	sl->waits = w;
	h->log(PETREL_LOG_INFO, "slow: suspend qid=%s at=%s delay_ms=%lld", w->qid, at, sl->delay_ms);
	return PETREL_PENDING;
}

static int slow_wait(struct slow *sl, petrel_txn *t, const char *at)
{
	const struct petrel_host *h = sl->host;
	/* The reply must be set now: resume() carries only the verdict. */
	if (sl->verdict == PETREL_REJECT || sl->verdict == PETREL_TEMPFAIL)
		h->txn_reply(t, "%s", sl->reply ? sl->reply
		             : sl->verdict == PETREL_REJECT ? "554 5.7.1 slow: refused"
		                                            : "451 4.7.1 slow: try later");
	return slow_suspend(sl, h->txn_session(t), h->txn_qid(t), at);
}

static int slow_auth(void *state, petrel_session *s, const char *user, int success)
{
	struct slow *sl = state;
	const struct petrel_host *h = sl->host;
	(void)user;
	if (!sl->at_auth || !success)
		return PETREL_CONTINUE;
	if (sl->verdict == PETREL_REJECT || sl->verdict == PETREL_TEMPFAIL)
		h->session_reply(s, "%s", sl->reply ? sl->reply
		                 : sl->verdict == PETREL_REJECT ? "535 5.7.8 slow: refused"
		                                                : "454 4.7.0 slow: try later");
	return slow_suspend(sl, s, "auth", "auth");
}

/* With only_rcpt, only transactions for that recipient wait. */
static int concerned(struct slow *sl, petrel_txn *t, petrel_addr *rcpt)
{
	const struct petrel_host *h = sl->host;
	if (!sl->only_rcpt)
		return 1;
	if (rcpt)
		return !strcasecmp(h->addr_string(rcpt), sl->only_rcpt);
	for (int i = 0; i < h->rcpt_count(t); i++)
		if (!strcasecmp(h->rcpt_address(t, i), sl->only_rcpt))
			return 1;
	return 0;
}

static int slow_rcpt(void *state, petrel_txn *t, petrel_addr *rcpt)
{
	struct slow *sl = state;
	if (!sl->at_rcpt || !concerned(sl, t, rcpt))
		return PETREL_CONTINUE;
	return slow_wait(sl, t, "rcpt");
}

static int slow_eom(void *state, petrel_txn *t)
{
	struct slow *sl = state;
	if (sl->at_rcpt || sl->at_auth || !concerned(sl, t, NULL))
		return PETREL_CONTINUE;
	return slow_wait(sl, t, "eom");
}

static int slow_init(const struct petrel_host *host, petrel_conf *conf, void **state)
{
	struct slow *sl = calloc(1, sizeof *sl);
	if (!sl)
		return -1;
	*state = sl;
	sl->host = host;
	sl->self = conf;
	sl->delay_ms = 1000;
	host->conf_int(conf, "delay_ms", &sl->delay_ms);
	if (sl->delay_ms < 0) {
		host->conf_error(conf, "delay_ms", "must be 0 or more");
		return -1;
	}
	const char *v = "continue", *at = "eom";
	host->conf_string(conf, "verdict", &v);
	sl->verdict = -1;
	for (int i = 0; i < (int)(sizeof verdicts / sizeof verdicts[0]); i++)
		if (!strcasecmp(v, verdicts[i]))
			sl->verdict = i;
	if (sl->verdict < 0) {
		host->conf_error(conf, "verdict", "'%s' is not a verdict", v);
		return -1;
	}
	host->conf_string(conf, "at", &at);
	if (strcmp(at, "eom") && strcmp(at, "rcpt") && strcmp(at, "auth")) {
		host->conf_error(conf, "at", "'%s': must be \"eom\", \"rcpt\" or \"auth\"", at);
		return -1;
	}
	sl->at_rcpt = !strcmp(at, "rcpt");
	sl->at_auth = !strcmp(at, "auth");
	const char *how = "timer";
	host->conf_string(conf, "wait", &how);
	if (strcmp(how, "timer") && strcmp(how, "work")) {
		host->conf_error(conf, "wait", "'%s': must be \"timer\" or \"work\"", how);
		return -1;
	}
	sl->by_work = !strcmp(how, "work");
	if (sl->by_work && !PETREL_HOST_HAS(host, 1)) {
		host->conf_error(conf, "wait", "\"work\" needs module API 1.1 (work_submit)");
		return -1;
	}
	host->conf_string(conf, "reply", &sl->reply);
	host->conf_string(conf, "only_rcpt", &sl->only_rcpt);
	return 0;
}

static void slow_fini(void *state)
{
	struct slow *sl = state;
	while (sl && sl->waits) {
		struct wait *w = sl->waits;
		sl->waits = w->next;
		free(w);
	}
	free(sl);
}

static const struct petrel_setting slow_settings[] = {
	{ .name = "delay_ms", .type = PETREL_SET_INT, .help = "how long the hook waits (default 1000)" },
	{ .name = "verdict", .type = PETREL_SET_STRING, .help = "verdict after the wait (default continue)" },
	{ .name = "at", .type = PETREL_SET_STRING, .help = "\"eom\" (default), \"rcpt\" or \"auth\"" },
	{ .name = "reply", .type = PETREL_SET_STRING, .help = "reply for reject/tempfail" },
	{ .name = "wait", .type = PETREL_SET_STRING,
	  .help = "\"timer\" (default) or \"work\": sleep on a filter pool thread" },
	{ .name = "only_rcpt", .type = PETREL_SET_STRING,
	  .help = "only transactions with this recipient wait (default: all)" },
	{ .type = PETREL_SET_END },
};

static const struct petrel_hooks slow_hooks = {
	.auth = slow_auth,
	.rcpt = slow_rcpt,
	.eom = slow_eom,
};

PETREL_MODULE(
	.name = "slow",
	.version = "1.0",
	.summary = "test module: a hook that waits on a timer, then resumes",
	.settings = slow_settings,
	.init = slow_init,
	.fini = slow_fini,
	.filter = &slow_hooks,
);
