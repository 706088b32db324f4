/*
 * hooks.c - the "testhooks" module: a filter (and router and transport)
 * that exercises the whole module API for the black-box tests.
 *
 * It implements every hook of struct petrel_hooks and calls every
 * function of struct petrel_host at least once.  Each hook logs one line
 *
 *     testhooks: hook=NAME sid=N [qid=QID] [details...] verdict=WORD
 *
 * so a test can read the order in which the hooks ran (sid numbers the
 * sessions this module has seen, from 1).  Its configuration block
 * chooses what it does:
 *
 *   verdict_connect ... verdict_eom   the verdict of that hook
 *                                     ("continue", "reject", ...)
 *   reply                   reply text for reject/tempfail verdicts
 *   add_header, prepend_header        "Name: value" added (headers hook)
 *   change_header           "Name: value": the first Name gets value
 *   remove_header           "Name": every Name removed
 *   hold_if_subject, discard_if_subject, reject_if_subject
 *                           substring of the decoded Subject: that verdict
 *                           at end of message
 *   redirect_to             every recipient replaced by this one (eom)
 *   add_rcpt, remove_rcpt   one recipient added / removed (eom)
 *   reject_senders          MAIL FROM addresses refused
 *   suspend_eom             the eom hook waits on a pipe (fd_watch) and
 *                           resumes with its verdict
 *   body_preview            bytes of each decoded part body to log
 *   log_headers             log every header (name, value, decoded)
 *   route_transport         as the router: transport for local domains
 *   deliver_dir             as the transport: where messages are written
 *
 * Memory: a session slot and a transaction slot, allocated by the first
 * hook that needs them and freed in session_end / txn_end.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* pipe2 */
#endif
#include <petrel/petrel.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define HOOK_CONNECT 0
#define HOOK_HELO 1
#define HOOK_AUTH 2
#define HOOK_MAIL 3
#define HOOK_RCPT 4
#define HOOK_HEADERS 5
#define HOOK_PART 6
#define HOOK_EOM 7
#define NHOOKS 8

static const char *const verdict_names[] = {
	[PETREL_CONTINUE] = "continue", [PETREL_ACCEPT] = "accept",
	[PETREL_REJECT] = "reject",     [PETREL_TEMPFAIL] = "tempfail",
	[PETREL_DISCARD] = "discard",   [PETREL_HOLD] = "hold",
	[PETREL_PENDING] = "pending",
};

struct th {
	const struct petrel_host *host;
	petrel_conf *self;
	int verdict[NHOOKS];
	const char *reply;
	const char *add_header, *prepend_header, *change_header, *remove_header;
	const char *hold_if_subject, *discard_if_subject, *reject_if_subject;
	const char *redirect_to, *add_rcpt, *remove_rcpt;
	int suspend_eom;
	long long body_preview;
	int log_headers;
	const char *route_transport;
	const char *deliver_dir;
	unsigned long sessions;
};

struct th_session {              /* session slot */
	unsigned long sid;
	unsigned long long timer;    /* a long timer, cancelled at session_end */
	int ntxn;
};

struct th_txn {                  /* transaction slot */
	int decided;                 /* verdict chosen from the headers, or -1 */
	int nparts;
	int pipe[2];                 /* suspend_eom */
	unsigned long long pending;
};

struct resume_ctx {              /* suspend_eom: the pipe's callback */
	struct th *th;
	struct th_txn *x;
	int verdict;
};

static const char *vword(int v)
{
	return v >= 0 && v <= PETREL_PENDING ? verdict_names[v] : "?";
}

static struct th_session *sess_of(struct th *th, petrel_session *s)
{
	void **slot = th->host->session_slot(s, th->self);
	if (!*slot) {
		struct th_session *ss = calloc(1, sizeof *ss);
		if (!ss)
			return NULL;
		ss->sid = ++th->sessions;
		*slot = ss;
	}
	return *slot;
}

static unsigned long sid_of(struct th *th, petrel_session *s)
{
	struct th_session *ss = sess_of(th, s);
	return ss ? ss->sid : 0;
}

static struct th_txn *txn_of(struct th *th, petrel_txn *t)
{
	void **slot = th->host->txn_slot(t, th->self);
	if (!*slot) {
		struct th_txn *x = calloc(1, sizeof *x);
		if (!x)
			return NULL;
		x->decided = -1;
		x->pipe[0] = x->pipe[1] = -1;
		*slot = x;
	}
	return *slot;
}

/* Set the reply for a refusal at a transaction hook. */
static int txn_verdict(struct th *th, petrel_txn *t, int v)
{
	if (v == PETREL_REJECT)
		th->host->txn_reply(t, "%s", th->reply ? th->reply : "554 5.7.1 testhooks: refused");
	else if (v == PETREL_TEMPFAIL)
		th->host->txn_reply(t, "%s", th->reply ? th->reply : "451 4.7.1 testhooks: try later");
	return v;
}

static int session_verdict(struct th *th, petrel_session *s, int v)
{
	if (v == PETREL_REJECT)
		th->host->session_reply(s, "%s", th->reply ? th->reply : "554 5.7.1 testhooks: refused");
	else if (v == PETREL_TEMPFAIL)
		th->host->session_reply(s, "%s", th->reply ? th->reply : "421 4.7.1 testhooks: try later");
	return v;
}

/* ---- hooks ---- */

static void session_timer(void *arg)
{
	struct th *th = arg;
	th->host->log(PETREL_LOG_WARN, "testhooks: session timer fired (session over an hour?)");
}

static int th_connect(void *state, petrel_session *s)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	struct th_session *ss = sess_of(th, s);
	if (ss)   /* an hour: session_end cancels it (timer_cancel 0) */
		ss->timer = h->timer_add(th->self, 3600 * 1000ULL, session_timer, th);
	int v = th->verdict[HOOK_CONNECT];
	h->log(PETREL_LOG_INFO, "testhooks: hook=connect sid=%lu client=%s relay=%d verdict=%s",
	       sid_of(th, s), h->session_client_addr(s), h->session_may_relay(s), vword(v));
	return session_verdict(th, s, v);
}

static int th_helo(void *state, petrel_session *s, const char *helo)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	const char *seen = h->session_helo(s);
	int v = th->verdict[HOOK_HELO];
	h->log(PETREL_LOG_INFO, "testhooks: hook=helo sid=%lu helo=%s session_helo=%s verdict=%s",
	       sid_of(th, s), helo, seen ? seen : "(null)", vword(v));
	return session_verdict(th, s, v);
}

static int th_auth(void *state, petrel_session *s, const char *user, int success)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	const char *u = h->session_auth_user(s);
	int v = th->verdict[HOOK_AUTH];
	h->log(PETREL_LOG_INFO, "testhooks: hook=auth sid=%lu user=%s success=%d auth_user=%s verdict=%s",
	       sid_of(th, s), user, success, u ? u : "(null)", vword(v));
	return session_verdict(th, s, v);
}

static int th_mail(void *state, petrel_txn *t, petrel_addr *sender)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	petrel_session *s = h->txn_session(t);
	struct th_session *ss = sess_of(th, s);
	if (ss)
		ss->ntxn++;
	txn_of(th, t);
	int v = th->verdict[HOOK_MAIL];
	const char *a = h->addr_string(sender);
	for (int i = 0; i < h->conf_list_count(th->self, "reject_senders"); i++)
		if (!strcasecmp(a, h->conf_list_string(th->self, "reject_senders", i)))
			v = PETREL_REJECT;
	const char *login = h->session_auth_user(s);
	h->log(PETREL_LOG_INFO, "testhooks: hook=mail sid=%lu qid=%s addr=<%s> local=%s domain=%s "
	       "same=%d helo=%s auth_user=%s verdict=%s",
	       sid_of(th, s), h->txn_qid(t), a, h->addr_local(sender), h->addr_domain(sender),
	       h->txn_sender(t) == sender, h->txn_client_helo(t) ? h->txn_client_helo(t) : "(null)",
	       login ? login : "(null)", vword(v));
	return txn_verdict(th, t, v);
}

static int th_rcpt(void *state, petrel_txn *t, petrel_addr *rcpt)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	petrel_session *s = h->txn_session(t);
	int v = th->verdict[HOOK_RCPT];
	h->log(PETREL_LOG_INFO, "testhooks: hook=rcpt sid=%lu qid=%s addr=<%s> local_domain=%d verdict=%s",
	       sid_of(th, s), h->txn_qid(t), h->addr_string(rcpt),
	       h->is_local_domain(s, h->addr_domain(rcpt)), vword(v));
	return txn_verdict(th, t, v);
}

/* "Name: value" -> name copied into buf, pointer to value. */
static const char *split_header(const char *spec, char *name, size_t size)
{
	const char *colon = strchr(spec, ':');
	size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
	if (n >= size)
		n = size - 1;
	memcpy(name, spec, n);
	name[n] = 0;
	if (!colon)
		return "";
	colon++;
	while (*colon == ' ' || *colon == '\t')
		colon++;
	return colon;
}

static int th_headers(void *state, petrel_txn *t)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	struct th_txn *x = txn_of(th, t);
	const char *subject = NULL;
	int n = h->header_count(t);
	for (int i = 0; i < n; i++) {
		const char *name = h->header_name(t, i);
		const char *value = h->header_value(t, i);
		const char *decoded = h->header_decoded(t, i);
		if (th->log_headers)
			h->log(PETREL_LOG_INFO, "testhooks: header qid=%s i=%d name=%s value=%s decoded=%s",
			       h->txn_qid(t), i, name, value, decoded);
		if (!subject && !strcasecmp(name, "Subject"))
			subject = decoded;
	}
	if (x && subject) {
		if (th->reject_if_subject && strstr(subject, th->reject_if_subject))
			x->decided = PETREL_REJECT;
		else if (th->hold_if_subject && strstr(subject, th->hold_if_subject))
			x->decided = PETREL_HOLD;
		else if (th->discard_if_subject && strstr(subject, th->discard_if_subject))
			x->decided = PETREL_DISCARD;
	}
	char name[128];
	const char *value;
	if (th->add_header) {
		value = split_header(th->add_header, name, sizeof name);
		if (h->header_add(t, name, value, 0) < 0)
			h->log(PETREL_LOG_WARN, "testhooks: header_add %s refused", name);
	}
	if (th->prepend_header) {
		value = split_header(th->prepend_header, name, sizeof name);
		if (h->header_add(t, name, value, 1) < 0)
			h->log(PETREL_LOG_WARN, "testhooks: header_add (prepend) %s refused", name);
	}
	if (th->change_header) {
		value = split_header(th->change_header, name, sizeof name);
		if (h->header_change(t, name, 0, value) < 0)
			h->log(PETREL_LOG_WARN, "testhooks: header_change %s refused", name);
	}
	if (th->remove_header) {
		split_header(th->remove_header, name, sizeof name);
		if (h->header_remove(t, name, -1) < 0)
			h->log(PETREL_LOG_WARN, "testhooks: header_remove %s refused", name);
	}
	int v = th->verdict[HOOK_HEADERS];
	h->log(PETREL_LOG_INFO, "testhooks: hook=headers sid=%lu qid=%s count=%d subject=%s verdict=%s",
	       sid_of(th, h->txn_session(t)), h->txn_qid(t), n, subject ? subject : "(none)", vword(v));
	return txn_verdict(th, t, v);
}

static int th_part(void *state, petrel_txn *t, petrel_part *p)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	struct th_txn *x = txn_of(th, t);
	if (x)
		x->nparts++;
	size_t len = 0;
	const char *body = h->part_body(p, &len);
	char preview[256];
	size_t np = th->body_preview > 0 ? (size_t)th->body_preview : 0;
	if (np > len)
		np = len;
	if (np >= sizeof preview)
		np = sizeof preview - 1;
	for (size_t i = 0; i < np; i++)
		preview[i] = body[i] >= 0x20 && body[i] < 0x7f ? body[i] : '.';
	preview[np] = 0;
	int v = th->verdict[HOOK_PART];
	h->log(PETREL_LOG_INFO, "testhooks: hook=part sid=%lu qid=%s index=%d depth=%d multipart=%d "
	       "type=%s filename=%s disposition=%s flags=0x%x len=%zu body=%s verdict=%s",
	       sid_of(th, h->txn_session(t)), h->txn_qid(t), h->part_index(p), h->part_depth(p),
	       h->part_is_multipart(p), h->part_content_type(p), h->part_filename(p),
	       h->part_disposition(p), h->part_flags(p), len, preview, vword(v));
	return txn_verdict(th, t, v);
}

/* Replace every recipient with th->redirect_to, add/remove single ones. */
static void edit_recipients(struct th *th, petrel_txn *t)
{
	const struct petrel_host *h = th->host;
	if (th->redirect_to) {
		int n = h->rcpt_count(t);
		char **old = calloc((size_t)n + 1, sizeof *old);
		for (int i = 0; old && i < n; i++)
			old[i] = strdup(h->rcpt_address(t, i));
		if (h->rcpt_add(t, th->redirect_to) < 0)
			h->log(PETREL_LOG_WARN, "testhooks: rcpt_add <%s> refused", th->redirect_to);
		for (int i = 0; old && i < n; i++) {
			if (old[i] && strcasecmp(old[i], th->redirect_to) &&
			    h->rcpt_remove(t, old[i]) < 0)
				h->log(PETREL_LOG_WARN, "testhooks: rcpt_remove <%s> failed", old[i]);
			free(old[i]);
		}
		free(old);
	}
	if (th->add_rcpt && h->rcpt_add(t, th->add_rcpt) < 0)
		h->log(PETREL_LOG_WARN, "testhooks: rcpt_add <%s> refused", th->add_rcpt);
	if (th->remove_rcpt && h->rcpt_remove(t, th->remove_rcpt) < 0)
		h->log(PETREL_LOG_WARN, "testhooks: rcpt_remove <%s> failed", th->remove_rcpt);
}

static void eom_resume(int fd, int events, void *arg)
{
	struct resume_ctx *rc = arg;
	struct th *th = rc->th;
	char c;
	(void)events;
	if (read(fd, &c, 1) < 0 && errno == EAGAIN)
		return;
	th->host->fd_watch(th->self, fd, 0, NULL, NULL);
	close(rc->x->pipe[0]);
	close(rc->x->pipe[1]);
	rc->x->pipe[0] = rc->x->pipe[1] = -1;
	int r = th->host->resume(th->self, rc->x->pending, rc->verdict);
	th->host->log(PETREL_LOG_INFO, "testhooks: resumed verdict=%s resume=%d", vword(rc->verdict), r);
	free(rc);
}

static int th_eom(void *state, petrel_txn *t)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	struct th_txn *x = txn_of(th, t);
	edit_recipients(th, t);
	int v = th->verdict[HOOK_EOM];
	if (x && x->decided >= 0)
		v = x->decided;
	char rcpts[512] = "";
	size_t used = 0;
	for (int i = 0; i < h->rcpt_count(t); i++) {
		int k = snprintf(rcpts + used, sizeof rcpts - used, "%s%s", i ? "," : "",
		                 h->rcpt_address(t, i));
		if (k < 0 || (size_t)k >= sizeof rcpts - used)
			break;
		used += (size_t)k;
	}
	h->log(PETREL_LOG_INFO, "testhooks: hook=eom sid=%lu qid=%s size=%llu parts=%d rcpts=%s "
	       "verdict=%s suspend=%d",
	       sid_of(th, h->txn_session(t)), h->txn_qid(t), h->txn_size(t), x ? x->nparts : -1,
	       rcpts, vword(v), th->suspend_eom);
	v = txn_verdict(th, t, v);
	if (!th->suspend_eom || !x)
		return v;
	/* Wait for a byte on a pipe: the fd callback resumes the chain. */
	struct resume_ctx *rc = calloc(1, sizeof *rc);
	if (!rc || pipe2(x->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
		free(rc);
		return v;
	}
	*rc = (struct resume_ctx){ .th = th, .x = x, .verdict = v };
	x->pending = h->suspend(h->txn_session(t));
	if (h->fd_watch(th->self, x->pipe[0], PETREL_FD_READ, eom_resume, rc) < 0 ||
	    write(x->pipe[1], "x", 1) != 1) {
		h->log(PETREL_LOG_ERROR, "testhooks: cannot watch a pipe");
		return PETREL_TEMPFAIL;
	}
	return PETREL_PENDING;
}

static void th_queued(void *state, petrel_txn *t)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	h->log(PETREL_LOG_INFO, "testhooks: hook=queued sid=%lu qid=%s",
	       sid_of(th, h->txn_session(t)), h->txn_qid(t));
}

static void th_txn_end(void *state, petrel_txn *t)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	void **slot = h->txn_slot(t, th->self);
	struct th_txn *x = *slot;
	h->log(PETREL_LOG_INFO, "testhooks: hook=txn_end sid=%lu qid=%s",
	       sid_of(th, h->txn_session(t)), h->txn_qid(t));
	if (x && x->pipe[0] >= 0) {   /* ended while suspended */
		h->fd_watch(th->self, x->pipe[0], 0, NULL, NULL);
		close(x->pipe[0]);
		close(x->pipe[1]);
	}
	free(x);
	*slot = NULL;
}

static void th_session_end(void *state, petrel_session *s)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	void **slot = h->session_slot(s, th->self);
	struct th_session *ss = *slot;
	int cancel = ss ? h->timer_cancel(th->self, ss->timer) : -2;
	h->log(PETREL_LOG_INFO, "testhooks: hook=session_end sid=%lu txns=%d timer_cancel=%d",
	       ss ? ss->sid : 0, ss ? ss->ntxn : 0, cancel);
	free(ss);
	*slot = NULL;
}

/* ---- router: local domains to route_transport ---- */

static int th_route(void *state, petrel_route *r, petrel_addr *rcpt)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	const char *dom = h->route_local_domain(r, h->addr_domain(rcpt));
	h->log(PETREL_LOG_INFO, "testhooks: route addr=<%s> local=%s", h->addr_string(rcpt),
	       dom ? dom : "(no)");
	if (!dom)
		return PETREL_ROUTE_UNKNOWN;
	return h->route_add(r, th->route_transport, h->addr_string(rcpt)) < 0 ? PETREL_ROUTE_TEMPFAIL
	                                                                       : PETREL_ROUTE_OK;
}

/* ---- transport: one file per delivery in deliver_dir (worker thread) ---- */

static int th_deliver(void *state, petrel_delivery *d)
{
	struct th *th = state;
	const struct petrel_host *h = th->host;
	if (!th->deliver_dir) {
		h->delivery_status(d, "testhooks: no deliver_dir set");
		return PETREL_DEFER;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/%s.%s@%s", th->deliver_dir, h->delivery_qid(d),
	         h->delivery_local(d), h->delivery_domain(d));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		h->delivery_status(d, "testhooks: %s: %s", path, strerror(errno));
		return PETREL_DEFER;
	}
	char hdr[1024];
	int n = snprintf(hdr, sizeof hdr, "X-Testhooks-Envelope: from=<%s> to=<%s>\r\n",
	                 h->delivery_sender(d), h->delivery_recipient(d));
	int ok = n > 0 && write(fd, hdr, (size_t)n) == n;
	char buf[65536];
	ssize_t got = 0;
	while (ok && (got = h->delivery_read(d, buf, sizeof buf)) > 0)
		ok = write(fd, buf, (size_t)got) == got;
	if (got < 0)
		ok = 0;
	if (close(fd) < 0)
		ok = 0;
	h->delivery_status(d, ok ? "testhooks: written to %s" : "testhooks: write error on %s", path);
	h->log(PETREL_LOG_INFO, "testhooks: deliver qid=%s to=<%s> ok=%d", h->delivery_qid(d),
	       h->delivery_recipient(d), ok);
	return ok ? PETREL_DELIVERED : PETREL_DEFER;
}

/* ---- configuration ---- */

static const char *const verdict_settings[NHOOKS] = {
	"verdict_connect", "verdict_helo", "verdict_auth", "verdict_mail",
	"verdict_rcpt", "verdict_headers", "verdict_part", "verdict_eom",
};

static int th_init(const struct petrel_host *host, petrel_conf *conf, void **state)
{
	struct th *th = calloc(1, sizeof *th);
	if (!th)
		return -1;
	*state = th;
	th->host = host;
	th->self = conf;
	th->route_transport = "maildir";
	if (host->api_major != PETREL_API_MAJOR) {
		host->conf_error(conf, "verdict_eom", "host API %u, module built for %d",
		                 host->api_major, PETREL_API_MAJOR);
		return -1;
	}
	for (int i = 0; i < NHOOKS; i++) {
		const char *w = NULL;
		if (!host->conf_string(conf, verdict_settings[i], &w))
			continue;
		int v = -1;
		for (int k = 0; k < PETREL_PENDING; k++)
			if (!strcasecmp(w, verdict_names[k]))
				v = k;
		if (v < 0) {
			host->conf_error(conf, verdict_settings[i],
			                 "'%s' is not a verdict (continue, accept, reject, tempfail, discard, hold)", w);
			return -1;
		}
		th->verdict[i] = v;
	}
	host->conf_string(conf, "reply", &th->reply);
	host->conf_string(conf, "add_header", &th->add_header);
	host->conf_string(conf, "prepend_header", &th->prepend_header);
	host->conf_string(conf, "change_header", &th->change_header);
	host->conf_string(conf, "remove_header", &th->remove_header);
	host->conf_string(conf, "hold_if_subject", &th->hold_if_subject);
	host->conf_string(conf, "discard_if_subject", &th->discard_if_subject);
	host->conf_string(conf, "reject_if_subject", &th->reject_if_subject);
	host->conf_string(conf, "redirect_to", &th->redirect_to);
	host->conf_string(conf, "add_rcpt", &th->add_rcpt);
	host->conf_string(conf, "remove_rcpt", &th->remove_rcpt);
	host->conf_string(conf, "route_transport", &th->route_transport);
	host->conf_string(conf, "deliver_dir", &th->deliver_dir);
	host->conf_bool(conf, "suspend_eom", &th->suspend_eom);
	host->conf_bool(conf, "log_headers", &th->log_headers);
	host->conf_int(conf, "body_preview", &th->body_preview);
	host->log(PETREL_LOG_INFO, "testhooks: init api=%u.%u reject_senders=%d", host->api_major,
	          host->api_minor, host->conf_list_count(conf, "reject_senders"));
	return 0;
}

static void th_fini(void *state)
{
	free(state);
}

static const struct petrel_setting th_settings[] = {
	{ .name = "verdict_connect", .type = PETREL_SET_STRING, .help = "verdict of the connect hook" },
	{ .name = "verdict_helo", .type = PETREL_SET_STRING, .help = "verdict of the helo hook" },
	{ .name = "verdict_auth", .type = PETREL_SET_STRING, .help = "verdict of the auth hook" },
	{ .name = "verdict_mail", .type = PETREL_SET_STRING, .help = "verdict of the mail hook" },
	{ .name = "verdict_rcpt", .type = PETREL_SET_STRING, .help = "verdict of the rcpt hook" },
	{ .name = "verdict_headers", .type = PETREL_SET_STRING, .help = "verdict of the headers hook" },
	{ .name = "verdict_part", .type = PETREL_SET_STRING, .help = "verdict of the part hook" },
	{ .name = "verdict_eom", .type = PETREL_SET_STRING, .help = "verdict of the eom hook" },
	{ .name = "reply", .type = PETREL_SET_STRING, .help = "reply for reject/tempfail verdicts" },
	{ .name = "add_header", .type = PETREL_SET_STRING, .help = "\"Name: value\" appended" },
	{ .name = "prepend_header", .type = PETREL_SET_STRING, .help = "\"Name: value\" put on top" },
	{ .name = "change_header", .type = PETREL_SET_STRING, .help = "\"Name: value\": the first Name changed" },
	{ .name = "remove_header", .type = PETREL_SET_STRING, .help = "header name: all of them removed" },
	{ .name = "hold_if_subject", .type = PETREL_SET_STRING, .help = "hold when the Subject contains this" },
	{ .name = "discard_if_subject", .type = PETREL_SET_STRING, .help = "discard when the Subject contains this" },
	{ .name = "reject_if_subject", .type = PETREL_SET_STRING, .help = "reject when the Subject contains this" },
	{ .name = "redirect_to", .type = PETREL_SET_STRING, .help = "replace every recipient with this one" },
	{ .name = "add_rcpt", .type = PETREL_SET_STRING, .help = "add this recipient" },
	{ .name = "remove_rcpt", .type = PETREL_SET_STRING, .help = "remove this recipient" },
	{ .name = "reject_senders", .type = PETREL_SET_STRING_LIST, .help = "senders refused at MAIL" },
	{ .name = "suspend_eom", .type = PETREL_SET_BOOL, .help = "the eom hook waits on a pipe first" },
	{ .name = "log_headers", .type = PETREL_SET_BOOL, .help = "log every header" },
	{ .name = "body_preview", .type = PETREL_SET_INT, .help = "bytes of each decoded part to log" },
	{ .name = "route_transport", .type = PETREL_SET_STRING, .help = "router: transport for local domains" },
	{ .name = "deliver_dir", .type = PETREL_SET_STRING, .help = "transport: directory written to" },
	{ .type = PETREL_SET_END },
};

static const struct petrel_hooks th_hooks = {
	.connect = th_connect,
	.helo = th_helo,
	.auth = th_auth,
	.mail = th_mail,
	.rcpt = th_rcpt,
	.headers = th_headers,
	.part = th_part,
	.eom = th_eom,
	.queued = th_queued,
	.txn_end = th_txn_end,
	.session_end = th_session_end,
};

static const struct petrel_router_ops th_router = { .route = th_route };
static const struct petrel_transport_ops th_transport = { .deliver = th_deliver };

PETREL_MODULE(
	.name = "testhooks",
	.version = "1.0",
	.summary = "test module: every hook, every host function",
	.settings = th_settings,
	.init = th_init,
	.fini = th_fini,
	.filter = &th_hooks,
	.router = &th_router,
	.transport = &th_transport,
);
