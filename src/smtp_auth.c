/*
 * smtp_auth.c - the AUTH command in the SMTP session (RFC 4954): PLAIN
 * (RFC 4616) and LOGIN, with or without an initial response, the 334
 * dialog, "*" to cancel.
 *
 * AUTH is offered when the listener says auth = true and the session is
 * under TLS, or the listener also says auth_cleartext = true (Postfix's
 * smtpd_tls_auth_only, the other way round).  A password is checked on
 * the auth worker pool: a yescrypt hash costs tens of milliseconds, which
 * the event loop must not spend.  Meanwhile the session reads no input
 * (pipelined commands wait) and other sessions go on.  Then the modules'
 * auth hooks run (STEP_AUTH): REJECT or TEMPFAIL turn a good password into
 * a refusal.  Only then is s->auth_user set.
 *
 * auth_failure_limit failed attempts (bad password, malformed PLAIN,
 * refused by a module, throttled) end the session with 421 4.7.0.
 *
 * Across connections (auth_throttle.h): a client address (IPv6: /64)
 * with auth_client_failure_limit wrong passwords within
 * auth_client_failure_window seconds, or with auth_client_concurrency
 * checks already in flight, gets 454 4.7.0 before any hash is computed:
 * a stream of bad logins from one address neither brute-forces nor fills
 * the filter threads, and other addresses still log in.  STARTTLS resets
 * none of this (nor the session's own failure count).
 *
 * Logs: success "client=..., sasl_method=PLAIN, sasl_username=alice";
 * failure "SASL PLAIN authentication failed" with the client address.
 * Never a password, never what the client sent.
 */
#include "smtp_server.h"
#include "auth.h"
#include "auth_throttle.h"
#include "filter_chain.h"
#include "log.h"
#include "stats.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FIELD_MAX 255
#define AUTH_CLIENTS_MAX 16384     /* addresses the throttle remembers (~80 bytes each) */

/* base64 of "Username:" and "Password:", the LOGIN prompts */
#define LOGIN_USER_PROMPT "334 VXNlcm5hbWU6"
#define LOGIN_PASS_PROMPT "334 UGFzc3dvcmQ6"

enum mech { MECH_PLAIN, MECH_LOGIN };

struct sasl {
	enum mech mech;
	char *user;                  /* LOGIN: the name, once given */
};

/* A check on the auth worker pool.  The session may end first: then
 * auth_session_end() clears s and done() only frees the job. */
struct auth_job {
	struct petrel_session *s;
	struct server *srv;
	struct auth_client_key key;  /* its check is in flight in srv->auth_throttle */
	const struct auth_db *db;
	char user[FIELD_MAX + 1];
	char pass[FIELD_MAX + 1];
	bool ok;
};

static const char *mech_name(enum mech m)
{
	return m == MECH_PLAIN ? "PLAIN" : "LOGIN";
}

bool auth_offered(const struct petrel_session *s)
{
	const struct listener_conf *lc = s->l->conf;
	return lc->auth && s->srv->auth_db && (s->tls || lc->auth_cleartext);
}

static void sasl_end(struct petrel_session *s)
{
	if (!s->sasl)
		return;
	free(s->sasl->user);
	xfree(&s->sasl);
}

void auth_abort(struct petrel_session *s)
{
	sasl_end(s);
}

void auth_session_end(struct petrel_session *s)
{
	sasl_end(s);
	if (s->auth_job)
		s->auth_job->s = NULL;
	s->auth_job = NULL;
	xfree(&s->auth_try_user);
}

static struct auth_throttle_limits throttle_limits(const struct config *cfg)
{
	return (struct auth_throttle_limits){
		.failures = cfg->auth_client_failure_limit,
		.window_ms = (uint64_t)cfg->auth_client_failure_window * 1000,
		.concurrency = cfg->auth_client_concurrency,
	};
}

static struct auth_throttle *throttle_of(struct server *srv)
{
	if (!srv->auth_throttle)
		srv->auth_throttle = auth_throttle_new(AUTH_CLIENTS_MAX);
	return srv->auth_throttle;
}

/* The reply when the client's address may not try a password now, or NULL;
 * begin: also count a check in flight for it. */
static const char *throttled(struct petrel_session *s, bool begin, struct auth_client_key *k)
{
	struct config *cfg = s->srv->cfg;
	struct auth_throttle_limits lim = throttle_limits(cfg);
	struct auth_throttle *t = throttle_of(s->srv);
	uint64_t now = ev_now_ms();
	auth_client_key(&s->peer, k);
	enum auth_throttle_verdict v = begin ? auth_throttle_begin(t, k, &lim, now)
	                                     : auth_throttle_check(t, k, &lim, now);
	if (v == AUTH_THROTTLE_FAILURES) {
		log_warn("%s: AUTH refused: %d failed logins from %s within %d s", s->peer_name,
		         auth_throttle_failures(t, k, &lim, now), s->peer_addr, cfg->auth_client_failure_window);
		return "454 4.7.0 Error: too many failed logins from your address, try again later";
	}
	if (v == AUTH_THROTTLE_BUSY) {
		log_warn("%s: AUTH refused: %d password checks from %s in progress", s->peer_name,
		         cfg->auth_client_concurrency, s->peer_addr);
		return "454 4.7.0 Error: too many logins in progress from your address, try again later";
	}
	return NULL;
}

/* A failed attempt: its reply, and the session's end at the limit. */
static void count_failure(struct petrel_session *s, const char *reply)
{
	stats_auth(false);
	session_reply(s, "%s", reply);
	if (++s->auth_failures < s->srv->cfg->auth_failure_limit)
		return;
	log_info("too many AUTH failures (%d) from %s", s->auth_failures, s->peer_name);
	session_reply(s, "421 4.7.0 %s Error: too many failed authentication attempts",
	              s->srv->cfg->hostname);
	s->state = S_CLOSING;
}

static void refuse_malformed(struct petrel_session *s, enum mech m, const char *why)
{
	log_warn("%s: SASL %s authentication failed: %s", s->peer_name, mech_name(m), why);
	count_failure(s, "535 5.7.8 Error: authentication failed");
}

/* --- the password check, on a worker thread --- */

static void check_work(void *arg)
{
	struct auth_job *job = arg;
	job->ok = auth_db_verify(job->db, job->user, job->pass);
	explicit_bzero(job->pass, sizeof job->pass);
}

static void check_done(void *arg)
{
	struct auth_job *job = arg;
	struct petrel_session *s = job->s;
	bool ok = job->ok;
	struct auth_throttle_limits lim = throttle_limits(job->srv->cfg);
	auth_throttle_end(job->srv->auth_throttle, &job->key, !ok, &lim, ev_now_ms());
	free(job);
	if (!s)
		return;              /* the client left meanwhile */
	s->auth_job = NULL;
	if (s->state == S_CLOSING) {     /* shutting down: 421 already said */
		xfree(&s->auth_try_user);
		return;
	}
	s->auth_try_ok = ok;
	s->reply[0] = 0;
	chain_start(s, STEP_AUTH);   /* then auth_done() */
}

static void start_check(struct petrel_session *s, const char *user, const char *pass)
{
	struct auth_client_key key;
	const char *no = throttled(s, true, &key);
	if (no) {
		enum mech m = s->sasl->mech;
		sasl_end(s);
		log_info("NOQUEUE: reject: AUTH from %s: %s; sasl_method=%s", s->peer_name, no, mech_name(m));
		count_failure(s, no);
		return;
	}
	struct auth_job *job = xcalloc(1, sizeof *job);
	job->s = s;
	job->srv = s->srv;
	job->key = key;
	job->db = s->srv->auth_db;
	snprintf(job->user, sizeof job->user, "%s", user);
	snprintf(job->pass, sizeof job->pass, "%s", pass);
	s->auth_try_mech = mech_name(s->sasl->mech);
	free(s->auth_try_user);
	s->auth_try_user = xstrdup(user);
	s->auth_job = job;
	sasl_end(s);
	workers_submit(s->srv->filter_workers, check_work, check_done, job);
}

void auth_done(struct petrel_session *s, int v)
{
	bool refused = v == PETREL_REJECT || v == PETREL_TEMPFAIL;
	if (s->auth_try_ok && !refused) {
		s->auth_user = s->auth_try_user;
		s->auth_try_user = NULL;
		log_info("client=%s, sasl_method=%s, sasl_username=%s", s->peer_name, s->auth_try_mech,
		         s->auth_user);
		stats_auth(true);
		session_reply(s, "235 2.7.0 Authentication successful");
		return;
	}
	if (!s->auth_try_ok) {
		log_warn("%s: SASL %s authentication failed", s->peer_name, s->auth_try_mech);
		count_failure(s, "535 5.7.8 Error: authentication failed");
	} else {
		char reply[sizeof s->reply];
		snprintf(reply, sizeof reply, "%s", s->reply[0] ? s->reply
		         : v == PETREL_REJECT ? "535 5.7.8 Error: authentication failed"
		         : "454 4.7.0 Temporary authentication failure");
		log_info("NOQUEUE: reject: AUTH from %s: %s; sasl_method=%s, sasl_username=%s",
		         s->peer_name, reply, s->auth_try_mech, s->auth_try_user);
		if (v == PETREL_REJECT)
			count_failure(s, reply);
		else
			session_reply(s, "%s", reply);
	}
	s->reply[0] = 0;
	xfree(&s->auth_try_user);
}

/* --- the dialog --- */

/* One response (the initial one or a 334 answer), base64 text. */
static void sasl_step(struct petrel_session *s, const char *text, size_t len)
{
	struct sasl *sa = s->sasl;
	char *buf = xmalloc(len / 4 * 3 + 4);
	/* RFC 4954: "=" is an empty initial response */
	long n = len == 1 && text[0] == '=' ? (buf[0] = 0, 0) : auth_base64_decode(text, len, buf);
	if (n < 0) {
		sasl_end(s);
		session_reply(s, "501 5.5.2 Error: invalid base64 data");
	} else if (sa->mech == MECH_PLAIN) {
		const char *user, *pass, *why;
		if (auth_plain_split(buf, (size_t)n, &user, &pass, &why) < 0) {
			sasl_end(s);
			refuse_malformed(s, MECH_PLAIN, why);
		} else {
			start_check(s, user, pass);
		}
	} else if (!sa->user) {
		if (n == 0 || n > FIELD_MAX || memchr(buf, 0, (size_t)n)) {
			sasl_end(s);
			refuse_malformed(s, MECH_LOGIN, "bad user name");
		} else {
			sa->user = xstrdup(buf);
			session_reply(s, LOGIN_PASS_PROMPT);
		}
	} else {
		if (n == 0 || n > FIELD_MAX || memchr(buf, 0, (size_t)n)) {
			sasl_end(s);
			refuse_malformed(s, MECH_LOGIN, "bad password");
		} else {
			start_check(s, sa->user, buf);
		}
	}
	explicit_bzero(buf, len / 4 * 3 + 4);
	free(buf);
}

void auth_response(struct petrel_session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		sasl_end(s);
		session_reply(s, "501 5.0.0 Authentication cancelled");
		return;
	}
	sasl_step(s, line, len);
}

/* Why AUTH cannot be used now, as the reply, or NULL. */
static const char *auth_refusal(const struct petrel_session *s)
{
	if (!s->l->conf->auth || !s->srv->auth_db)
		return "503 5.5.1 Error: authentication not enabled";
	if (!auth_offered(s))
		return "538 5.7.11 Encryption required for requested authentication mechanism";
	if (!s->helo)
		return "503 5.5.1 Error: send HELO/EHLO first";
	if (s->auth_user)
		return "503 5.5.1 Error: already authenticated";
	if (s->txn)
		return "503 5.5.1 Error: MAIL transaction in progress";
	return NULL;
}

void do_auth(struct petrel_session *s, const char *arg)
{
	const char *no = auth_refusal(s);
	if (no) {
		session_reply(s, "%s", no);
		return;
	}
	struct auth_client_key key;
	if ((no = throttled(s, false, &key))) {      /* before any dialog */
		log_info("NOQUEUE: reject: AUTH from %s: %s", s->peer_name, no);
		count_failure(s, no);
		return;
	}
	const char *sp = strchr(arg, ' ');
	size_t mlen = sp ? (size_t)(sp - arg) : strlen(arg);
	const char *initial = sp ? sp + 1 : NULL;
	if (!mlen || (initial && (!*initial || strchr(initial, ' ')))) {
		session_reply(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
		return;
	}
	enum mech m;
	if (mlen == 5 && !strncasecmp(arg, "PLAIN", 5))
		m = MECH_PLAIN;
	else if (mlen == 5 && !strncasecmp(arg, "LOGIN", 5))
		m = MECH_LOGIN;
	else {
		session_reply(s, "504 5.5.4 Error: unsupported authentication mechanism");
		return;
	}
	s->sasl = xcalloc(1, sizeof *s->sasl);
	s->sasl->mech = m;
	if (initial)
		sasl_step(s, initial, strlen(initial));
	else
		session_reply(s, "%s", m == MECH_PLAIN ? "334 " : LOGIN_USER_PROMPT);
}
