/*
 * msa.c - the "msa" stage: message submission from mail clients (RFC
 * 6409; ports 587 with STARTTLS and 465 with implicit TLS).
 *
 *   listeners = ( { listen = "0.0.0.0:587"; stage = "msa"; tls = "starttls"; auth = true; } );
 *   modules = { msa = { senders = "/etc/petrel/senders"; check_from = true; }; };
 *
 * What it promises:
 *   - MAIL before a successful AUTH gets 530 5.7.0.  AUTH itself is the
 *     core's: an msa listener must have auth = true (petreld -t says so),
 *     and AUTH is offered only under TLS unless the listener sets
 *     auth_cleartext (RFC 4954 4, RFC 8314 3), so a login on an msa
 *     listener has been made over TLS unless the operator chose otherwise.
 *   - The envelope sender must belong to the login: the login itself when
 *     it is an address, login@D for each local domain D when it is not,
 *     and whatever the senders table (msa_senders.h) adds for it.  Else
 *     553 5.7.1 "Sender address rejected: not owned by user".  The null
 *     sender <> is allowed (MDNs and vacation replies of a mail client use
 *     it, as Postfix allows it under reject_sender_login_mismatch) unless
 *     allow_null_sender = false; check_from still judges its From:.
 *   - With check_from, every address of every From: field must belong to
 *     the login in the same way (refused at the end of data, 553 5.7.1); a
 *     From: that cannot be read as addresses is refused too.  A message
 *     without From: is let through as it is.
 *   - A logged-in user may send to any domain: the router sends other
 *     domains to its relay transport (smtp).
 *   - A missing Date: or Message-ID: is added at the end of the header
 *     section (RFC 6409 8.2, 8.3): Date is the local time of the end of
 *     data, Message-ID <YYYYMMDDhhmmss.QID@hostname> (UTC, as Postfix
 *     writes it).  Fields the client wrote are never touched.
 *   - hide_client drops the "from HELO ([address])" clause of the
 *     Received: field the daemon wrote for this hop (the TLS comment, by,
 *     with, id, for and the date stay): the client's address and name do
 *     not travel with the message.
 *
 * Logs: the table's size at start; refusals are logged by the core with
 * the queue id and the reply.
 */
#include <petrel/petrel.h>
#include "msa_senders.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ADDR_MAX 1024        /* local@domain; RFC 5321 paths are 256 at most */

struct msa {
	const struct petrel_host *host;
	petrel_conf *conf;
	struct msa_senders *senders;
	int check_from;
	int hide_client;
	int allow_null_sender;
};

static int msa_init(const struct petrel_host *host, petrel_conf *conf, void **state)
{
	struct msa *m = calloc(1, sizeof *m);
	if (!m) {
		host->conf_error(conf, "senders", "out of memory");
		return -1;
	}
	*state = m;
	m->host = host;
	m->conf = conf;
	m->allow_null_sender = 1;
	host->conf_bool(conf, "check_from", &m->check_from);
	host->conf_bool(conf, "hide_client", &m->hide_client);
	host->conf_bool(conf, "allow_null_sender", &m->allow_null_sender);
	const char *path = NULL;
	if (host->conf_string(conf, "senders", &path) && *path) {
		char err[512];
		if (path[0] != '/') {
			host->conf_error(conf, "senders", "'%s': must be an absolute path", path);
			return -1;
		}
		if (msa_senders_load(path, &m->senders, err, sizeof err) < 0) {
			host->conf_error(conf, "senders", "%s", err);
			return -1;
		}
		host->log(PETREL_LOG_INFO, "msa: %zu sender table entries from %s",
		          msa_senders_count(m->senders), path);
	}
	return 0;
}

static void msa_fini(void *state)
{
	struct msa *m = state;
	if (!m)
		return;
	msa_senders_free(&m->senders);
	free(m);
}

/* Does login own address (local@domain, unquoted)? */
static bool owns(const struct msa *m, petrel_session *s, const char *login, const char *address)
{
	const char *at = strrchr(address, '@');
	if (!at || at == address || !at[1])
		return false;
	size_t local_len = (size_t)(at - address);
	if (strchr(login, '@')) {
		if (!strcasecmp(login, address))
			return true;
	} else if (strlen(login) == local_len && !strncasecmp(address, login, local_len) &&
	           m->host->is_local_domain(s, at + 1)) {
		return true;
	}
	return msa_senders_allows(m->senders, login, address) == 1;
}

/* The refusal, with the login named as Postfix does; the host refuses a
 * reply with a control character, so fall back on one without it. */
static int not_owned(const struct msa *m, petrel_txn *t, const char *shown, const char *login,
                     const char *where)
{
	if (m->host->txn_reply(t, "553 5.7.1 <%s>: Sender address rejected: not owned by user %s%s",
	                       shown, login, where) < 0)
		m->host->txn_reply(t, "553 5.7.1 Sender address rejected: not owned by user");
	return PETREL_REJECT;
}

static int msa_mail(void *state, petrel_txn *t, petrel_addr *sender)
{
	struct msa *m = state;
	const struct petrel_host *h = m->host;
	petrel_session *s = h->txn_session(t);
	const char *login = h->session_auth_user(s);
	if (!login) {
		h->txn_reply(t, "530 5.7.0 Authentication required");
		return PETREL_REJECT;
	}
	const char *local = h->addr_local(sender), *domain = h->addr_domain(sender);
	if (!*local && !*domain) {
		if (m->allow_null_sender)
			return PETREL_CONTINUE;
		return not_owned(m, t, "", login, "");
	}
	char address[ADDR_MAX];
	int n = snprintf(address, sizeof address, "%s@%s", local, domain);
	if (n > 0 && (size_t)n < sizeof address && *domain && owns(m, s, login, address))
		return PETREL_CONTINUE;
	return not_owned(m, t, h->addr_string(sender), login, "");
}

static int msa_rcpt(void *state, petrel_txn *t, petrel_addr *rcpt)
{
	struct msa *m = state;
	(void)rcpt;
	/* MAIL was refused without a login; this only guards the rule */
	if (!m->host->session_auth_user(m->host->txn_session(t))) {
		m->host->txn_reply(t, "530 5.7.0 Authentication required");
		return PETREL_REJECT;
	}
	return PETREL_CONTINUE;       /* a logged-in user may send anywhere */
}

/* check_from: every address of every From: field belongs to the login. */
static int msa_headers(void *state, petrel_txn *t)
{
	struct msa *m = state;
	const struct petrel_host *h = m->host;
	if (!m->check_from)
		return PETREL_CONTINUE;
	petrel_session *s = h->txn_session(t);
	const char *login = h->session_auth_user(s);
	if (!login)
		return PETREL_REJECT;
	int nh = h->header_count(t);
	for (int i = 0; i < nh; i++) {
		if (strcasecmp(h->header_name(t, i), "From"))
			continue;
		char **addrs;
		int n = msa_from_parse(h->header_value(t, i), &addrs);
		if (n <= 0) {
			msa_from_free(&addrs, 0);       /* n == 0: an empty array */
			h->txn_reply(t, "553 5.7.1 Sender address rejected: From: header without a "
			             "readable address");
			return PETREL_REJECT;
		}
		int verdict = PETREL_CONTINUE;
		for (int k = 0; k < n && verdict == PETREL_CONTINUE; k++)
			if (!owns(m, s, login, addrs[k]))
				verdict = not_owned(m, t, addrs[k], login, " (From: header)");
		msa_from_free(&addrs, n);
		if (verdict != PETREL_CONTINUE)
			return verdict;
	}
	return PETREL_CONTINUE;
}

/* The value of our Received: (header 0, written by the core for this
 * hop) without its "from HELO ([ADDR])" clause, tabs of the folding made
 * spaces; NULL when header 0 is not the one we expect. */
static char *received_hidden(const struct msa *m, petrel_txn *t)
{
	const struct petrel_host *h = m->host;
	if (h->header_count(t) < 1 || strcasecmp(h->header_name(t, 0), "Received"))
		return NULL;
	const char *v = h->header_value(t, 0);
	char mark[128];
	snprintf(mark, sizeof mark, " ([%s])", h->session_client_addr(h->txn_session(t)));
	if (strncmp(v, "from ", 5))
		return NULL;
	const char *p = strstr(v + 5, mark);
	if (!p || strcspn(v + 5, " \t") != (size_t)(p - (v + 5)))
		return NULL;                    /* "from" + one name + mark, nothing else */
	p += strlen(mark);
	while (*p == ' ' || *p == '\t')
		p++;
	char *out = strdup(p);
	if (!out)
		return NULL;
	for (char *q = out; *q; q++)
		if (*q == '\t')
			*q = ' ';
	return out;
}

static int msa_eom(void *state, petrel_txn *t)
{
	struct msa *m = state;
	const struct petrel_host *h = m->host;
	bool has_date = false, has_mid = false;
	int nh = h->header_count(t);
	for (int i = 0; i < nh; i++) {
		const char *name = h->header_name(t, i);
		has_date |= !strcasecmp(name, "Date");
		has_mid |= !strcasecmp(name, "Message-ID");
	}
	time_t now = time(NULL);
	struct tm tm;
	char buf[256];
	const char *qid = h->txn_qid(t);
	if (!has_date) {
		localtime_r(&now, &tm);
		strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S %z", &tm);
		if (h->header_add(t, "Date", buf, 0) < 0)
			h->log(PETREL_LOG_WARN, "%s: msa: cannot add Date: %s", qid, buf);
	}
	if (!has_mid) {
		const char *host = PETREL_HOST_HAS(h, 2) ? h->global_string("hostname") : NULL;
		char stamp[32];
		gmtime_r(&now, &tm);
		strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
		snprintf(buf, sizeof buf, "<%s.%s@%s>", stamp, qid, host && *host ? host : "localhost");
		if (h->header_add(t, "Message-ID", buf, 0) < 0)
			h->log(PETREL_LOG_WARN, "%s: msa: cannot add Message-ID: %s", qid, buf);
	}
	if (m->hide_client) {
		char *v = received_hidden(m, t);
		if (!v || h->header_change(t, "Received", 0, v) < 0)
			h->log(PETREL_LOG_WARN, "%s: msa: hide_client: the first Received: is not this hop's; "
			       "left as it is", qid);
		free(v);
	}
	return PETREL_CONTINUE;
}

static const struct petrel_setting msa_settings[] = {
	{ .name = "senders", .type = PETREL_SET_STRING,
	  .help = "file of 'login: address, @domain, ...' lines: more envelope senders a login may "
	          "use (default: the login, or login@ a local domain)" },
	{ .name = "check_from", .type = PETREL_SET_BOOL,
	  .help = "refuse a message whose From: addresses the login does not own, as for the envelope "
	          "sender (default false)" },
	{ .name = "hide_client", .type = PETREL_SET_BOOL,
	  .help = "drop the client's name and address from this hop's Received: field (default false)" },
	{ .name = "allow_null_sender", .type = PETREL_SET_BOOL,
	  .help = "let a logged-in user send with MAIL FROM:<> (default true)" },
	{ .type = PETREL_SET_END },
};

static const struct petrel_hooks msa_hooks = {
	.mail = msa_mail,
	.rcpt = msa_rcpt,
	.headers = msa_headers,
	.eom = msa_eom,
};

PETREL_MODULE(
	.name = "msa",
	.version = "1.0",
	.summary = "submission stage: AUTH required, senders owned by the login, Date/Message-ID added",
	.settings = msa_settings,
	.init = msa_init,
	.fini = msa_fini,
	.stage = &msa_hooks,
);
