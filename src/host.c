/*
 * host.c - the function table modules call (struct petrel_host, API 1.2).
 *
 * Each function maps an opaque API object to the core's struct.  Functions
 * used by transports (delivery_*) run on worker threads for deliver() and
 * on the loop for start(): they touch only the delivery they are given.
 * global_string and is_own_address take no context: they answer for the
 * server host_bind() named (one per process).
 */
#include "delivery.h"
#include "filter_chain.h"
#include "routes.h"
#include "msg_edit.h"
#include "smtp_server.h"
#include "log.h"
#include "module_load.h"
#include "server.h"
#include "session.h"
#include "worker.h"
#include "generation.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static void h_log(enum petrel_log_grade g, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(g == PETREL_LOG_ERROR ? LOG_GRADE_ERROR : g == PETREL_LOG_WARN ? LOG_GRADE_WARN
	                                                                        : LOG_GRADE_INFO, fmt, ap);
	va_end(ap);
}

static config_setting_t *conf_member(petrel_conf *c, const char *name)
{
	return c && c->block ? config_setting_get_member(c->block, name) : NULL;
}

static int h_conf_string(petrel_conf *c, const char *name, const char **out)
{
	config_setting_t *s = conf_member(c, name);
	if (!s || config_setting_type(s) != CONFIG_TYPE_STRING)
		return 0;
	*out = config_setting_get_string(s);
	return 1;
}

static int h_conf_int(petrel_conf *c, const char *name, long long *out)
{
	config_setting_t *s = conf_member(c, name);
	if (!s || (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64))
		return 0;
	*out = config_setting_get_int64(s);
	return 1;
}

static int h_conf_bool(petrel_conf *c, const char *name, int *out)
{
	config_setting_t *s = conf_member(c, name);
	if (!s || config_setting_type(s) != CONFIG_TYPE_BOOL)
		return 0;
	*out = config_setting_get_bool(s);
	return 1;
}

static int h_conf_list_count(petrel_conf *c, const char *name)
{
	config_setting_t *s = conf_member(c, name);
	return s && (config_setting_is_array(s) || config_setting_is_list(s)) ? config_setting_length(s) : 0;
}

static const char *h_conf_list_string(petrel_conf *c, const char *name, int i)
{
	config_setting_t *s = conf_member(c, name);
	return s ? config_setting_get_string_elem(s, i) : NULL;
}

static void h_conf_error(petrel_conf *c, const char *name, const char *fmt, ...)
{
	config_setting_t *s = conf_member(c, name);
	if (!s)
		s = c->block;
	struct buf msg = {0};
	va_list ap;
	va_start(ap, fmt);
	buf_vaddf(&msg, fmt, ap);
	va_end(ap);
	if (!c->errs) {             /* after init(): nobody collects errors any more */
		log_error("modules.%s.%s: %s", c->modname, name ? name : "?", msg.data ? msg.data : "");
	} else if (s) {
		config_error_at(c->cfg, s, c->errs, "%s", msg.data ? msg.data : "");
	} else {
		buf_addf(c->errs, "%s:0: modules.%s.%s: %s\n", c->cfg->file, c->modname, name,
		         msg.data ? msg.data : "");
	}
	buf_free(&msg);
	c->failed = 1;
}

static const char *h_session_client_addr(petrel_session *s) { return s->peer_addr; }
static const char *h_session_helo(petrel_session *s) { return s->helo; }
static int h_session_may_relay(petrel_session *s) { return s->may_relay; }
static int h_is_local_domain(petrel_session *s, const char *d)
{
	return config_is_local_domain(s->gen->cfg, d);
}
static petrel_session *h_txn_session(petrel_txn *t) { return t->s; }
static const char *h_txn_qid(petrel_txn *t) { return t->qid; }
static petrel_addr *h_txn_sender(petrel_txn *t) { return &t->sender; }
static const char *h_addr_string(petrel_addr *a) { return a->str; }
static const char *h_addr_local(petrel_addr *a) { return a->local; }
static const char *h_addr_domain(petrel_addr *a) { return a->domain; }

/* "CODE X.Y.Z text": 4xx/5xx, enhanced class matching the code. */
static int reply_valid(const char *r)
{
	size_t n = strlen(r);
	if (n < 11 || n > 500)
		return 0;
	if ((r[0] != '4' && r[0] != '5') || !isdigit((unsigned char)r[1]) ||
	    !isdigit((unsigned char)r[2]) || r[3] != ' ' || r[4] != r[0] || r[5] != '.')
		return 0;
	const char *p = r + 6;
	int digits = 0;
	while (isdigit((unsigned char)*p) && digits < 4)
		p++, digits++;
	if (!digits || digits > 3 || *p++ != '.')
		return 0;
	digits = 0;
	while (isdigit((unsigned char)*p) && digits < 4)
		p++, digits++;
	if (!digits || digits > 3 || *p++ != ' ' || !*p)
		return 0;
	for (; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

static int set_reply(char *dst, size_t size, const char *fmt, va_list ap)
{
	char tmp[600];
	vsnprintf(tmp, sizeof tmp, fmt, ap);
	if (!reply_valid(tmp)) {
		log_warn("module reply refused (not \"4xx/5xx X.Y.Z text\"): %.100s", tmp);
		dst[0] = 0;
		return -1;
	}
	snprintf(dst, size, "%s", tmp);
	return 0;
}

static int h_txn_reply(petrel_txn *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = set_reply(t->reply, sizeof t->reply, fmt, ap);
	va_end(ap);
	return r;
}

static int h_session_reply(petrel_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = set_reply(s->reply, sizeof s->reply, fmt, ap);
	va_end(ap);
	return r;
}

/* A non-local domain that a route with its own transport matches goes
 * there instead of where the router sent it. */
static const char *route_transport(struct server *srv, const char *transport, const char *address)
{
	const char *at = strrchr(address, '@'), *nexthop;
	const struct route *rt = at ? config_route_for(srv->cfg, at + 1, &nexthop) : NULL;
	return rt && rt->transport ? rt->transport : transport;
}

static int h_route_add(petrel_route *r, const char *transport, const char *address)
{
	if (!transport || !*transport || strchr(transport, '\t') || strchr(transport, '\n'))
		return -1;
	struct qmsg *m = r->qm;
	if (r->srv)
		transport = route_transport(r->srv, transport, address);
	for (int i = 0; i < m->ndests; i++)
		if (!strcmp(m->dests[i].transport, transport) && !strcasecmp(m->dests[i].address, address)) {
			r->added++;       /* already a destination: deliver once */
			return 0;
		}
	if (!qmsg_add_dest(m, transport, address, r->rcpt->str)) {
		log_warn("%s: router gave an invalid address <%s>", m->qid, address);
		return -1;
	}
	r->added++;
	return 0;
}

static const char *h_route_local_domain(petrel_route *r, const char *domain)
{
	struct config *c = r->srv->cfg;
	for (int i = 0; i < c->ndomains; i++)
		if (!strcasecmp(c->domains[i], domain))
			return c->domains[i];
	return NULL;
}

static const char *h_delivery_qid(petrel_delivery *d) { return d->m->qid; }
static const char *h_delivery_sender(petrel_delivery *d) { return d->m->sender; }
static const char *h_delivery_recipient(petrel_delivery *d) { return d->d->address; }
static const char *h_delivery_local(petrel_delivery *d) { return d->d->local; }
static const char *h_delivery_domain(petrel_delivery *d) { return d->d->domain; }

static ssize_t h_delivery_read(petrel_delivery *d, void *buf, size_t size)
{
	uint64_t left = d->m->end > (uint64_t)d->pos ? d->m->end - (uint64_t)d->pos : 0;
	if (size > left)
		size = (size_t)left;    /* a reused slot holds old bytes past the end */
	if (size == 0)
		return 0;
	for (;;) {
		ssize_t n = pread(d->fd, buf, size, d->pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0)
			d->pos += n;
		return n;
	}
}

static void h_delivery_status(petrel_delivery *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->status, sizeof d->status, fmt, ap);
	va_end(ap);
}

/* --- 1.2: deliveries with several recipients, asynchronous transports --- */

static bool rcpt_ok(petrel_delivery *d, int i)
{
	return i >= 0 && i < d->n;
}

static int h_delivery_rcpt_count(petrel_delivery *d) { return d->n; }

static const char *h_delivery_rcpt(petrel_delivery *d, int i)
{
	return rcpt_ok(d, i) ? d->m->dests[d->idx[i]].address : NULL;
}

static const char *h_delivery_rcpt_orcpt(petrel_delivery *d, int i)
{
	if (!rcpt_ok(d, i))
		return NULL;
	const char *x = d->m->dests[d->idx[i]].orcpt;
	if (!x)
		return "";
	if (!d->orcpt)
		d->orcpt = xcalloc((size_t)d->n, sizeof *d->orcpt);
	if (!d->orcpt[i]) {
		size_t n = strlen(x);
		d->orcpt[i] = xmalloc(n + 1);
		if (smtp_xtext_decode(x, n, d->orcpt[i], n + 1) < 0)
			d->orcpt[i][0] = 0;
	}
	return d->orcpt[i];
}

static unsigned h_delivery_rcpt_notify(petrel_delivery *d, int i)
{
	return rcpt_ok(d, i) ? d->m->dests[d->idx[i]].notify : 0;
}

static void h_delivery_rcpt_result(petrel_delivery *d, int i, int result, const char *fmt, ...)
{
	if (!rcpt_ok(d, i) || d->result[i] != DLV_NO_RESULT)
		return;
	result = delivery_result_known(result);
	char text[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt ? fmt : "", ap);
	va_end(ap);
	for (char *p = text; *p; p++)      /* one log line, whatever the peer sent */
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	if (d->async) {
		delivery_apply(d, i, result, text);    /* recorded at once */
	} else {
		d->result[i] = (signed char)result;   /* deliver(): the worker applies it */
		snprintf(d->status, sizeof d->status, "%s", text);
	}
}

static void h_delivery_relay(petrel_delivery *d, const char *relay)
{
	snprintf(d->relay, sizeof d->relay, "%s", relay ? relay : "");
	for (char *p = d->relay; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == ' ')
			*p = '?';
}

static void h_delivery_done(petrel_delivery *d)
{
	if (d && d->async)
		delivery_finished(d);
}

static int h_delivery_rewind(petrel_delivery *d)
{
	d->pos = d->m->msg_off;
	return 0;
}

static unsigned long long h_delivery_size(petrel_delivery *d) { return d->m->size; }
static unsigned h_delivery_flags(petrel_delivery *d) { return d->m->flags; }

static const char *h_delivery_envid(petrel_delivery *d)
{
	const char *x = d->m->envid;
	if (!x)
		return "";
	if (!d->envid) {
		size_t n = strlen(x);
		d->envid = xmalloc(n + 1);
		if (smtp_xtext_decode(x, n, d->envid, n + 1) < 0)
			d->envid[0] = 0;
	}
	return d->envid;
}

static const char *h_delivery_nexthop(petrel_delivery *d) { return d->nexthop ? d->nexthop : ""; }

static const char *h_delivery_route_option(petrel_delivery *d, const char *name)
{
	return name ? route_option(d->route, name) : NULL;
}

static struct server *bound;

void host_bind(struct server *srv)
{
	bound = srv;
}

static const char *h_global_string(const char *name)
{
	/* a module's init() during a (re)load reads the configuration it is
	 * made from, not the running one */
	const struct config *c = !bound ? NULL : bound->building ? bound->building : bound->cfg;
	if (!c || !name)
		return NULL;
	if (!strcmp(name, "hostname"))
		return c->hostname;
	if (!strcmp(name, "resolver"))
		return c->resolver;
	if (!strcmp(name, "relayhost"))
		return c->relayhost;
	if (!strcmp(name, "relayhost_tls"))
		return c->relayhost_tls;
	if (!strcmp(name, "spool"))
		return c->spool;
	return NULL;
}

/* A listener on addr:port, or on the wildcard address of its family when
 * addr is a loopback address (every local address is ours then; the
 * loopback ones are the ones a test or a bad MX record leads to). */
static int h_is_own_address(const char *addr, int port)
{
	if (!bound || !bound->cfg || !addr)
		return 0;
	unsigned char a[16];
	int fam = inet_pton(AF_INET, addr, a) == 1 ? AF_INET
	          : inet_pton(AF_INET6, addr, a) == 1 ? AF_INET6 : 0;
	if (!fam)
		return 0;
	bool loop = fam == AF_INET ? a[0] == 127 : !memcmp(a, in6addr_loopback.s6_addr, 16);
	const struct config *c = bound->cfg;
	for (int i = 0; i < c->nlisteners; i++) {
		const struct sockaddr_storage *ss = &c->listeners[i].addr;
		if (ss->ss_family != fam)
			continue;
		if (fam == AF_INET) {
			const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
			if (ntohs(s4->sin_port) != port)
				continue;
			if (!memcmp(&s4->sin_addr, a, 4) || (loop && s4->sin_addr.s_addr == htonl(INADDR_ANY)))
				return 1;
		} else {
			const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
			if (ntohs(s6->sin6_port) != port)
				continue;
			if (!memcmp(&s6->sin6_addr, a, 16) ||
			    (loop && !memcmp(&s6->sin6_addr, &in6addr_any, 16)))
				return 1;
		}
	}
	return 0;
}

/* --- slots, suspension, loop services --- */

static void **h_session_slot(petrel_session *s, petrel_conf *self)
{
	if (!s->slots)
		s->slots = xcalloc((size_t)s->srv->nslots + 1, sizeof *s->slots);
	return &s->slots[self->index];
}

static void **h_txn_slot(petrel_txn *t, petrel_conf *self)
{
	if (!t->slots)
		t->slots = xcalloc((size_t)t->s->srv->nslots + 1, sizeof *t->slots);
	return &t->slots[self->index];
}

static unsigned long long h_suspend(petrel_session *s)
{
	return chain_suspend(s);
}

static int h_resume(petrel_conf *self, unsigned long long id, int verdict)
{
	return self && self->srv ? chain_resume(self->srv, id, verdict) : -1;
}

struct module_timer {
	struct ev_timer t;
	unsigned long long id;
	petrel_timer_fn *fn;
	void *arg;
	struct server *srv;
	const petrel_conf *owner;     /* the module that asked */
	struct module_timer *next;
};

static void unlink_timer(struct server *srv, struct module_timer *mt)
{
	for (struct module_timer **p = &srv->timers; *p; p = &(*p)->next)
		if (*p == mt) {
			*p = mt->next;
			return;
		}
}

static void module_timer_fire(struct ev_loop *loop, void *arg)
{
	(void)loop;
	struct module_timer *mt = arg;
	unlink_timer(mt->srv, mt);
	petrel_timer_fn *fn = mt->fn;
	void *a = mt->arg;
	free(mt);
	fn(a);
}

static unsigned long long h_timer_add(petrel_conf *self, unsigned long long ms,
                                      petrel_timer_fn *fn, void *arg)
{
	struct server *srv = self ? self->srv : NULL;
	if (!srv || !fn)
		return 0;
	struct module_timer *mt = xcalloc(1, sizeof *mt);
	mt->id = ++srv->timer_counter;
	mt->fn = fn;
	mt->arg = arg;
	mt->srv = srv;
	mt->owner = self;
	mt->next = srv->timers;
	srv->timers = mt;
	ev_timer_init(&mt->t, module_timer_fire, mt);
	ev_timer_start(srv->loop, &mt->t, ms);
	return mt->id;
}

static int h_timer_cancel(petrel_conf *self, unsigned long long id)
{
	struct server *srv = self ? self->srv : NULL;
	for (struct module_timer *mt = srv ? srv->timers : NULL; mt; mt = mt->next)
		if (mt->id == id) {
			ev_timer_stop(srv->loop, &mt->t);
			unlink_timer(srv, mt);
			free(mt);
			return 0;
		}
	return -1;
}

void module_timers_cancel(struct server *srv, const struct petrel_conf *conf)
{
	struct module_timer **p = &srv->timers;
	while (*p) {
		struct module_timer *mt = *p;
		if (mt->owner != conf) {
			p = &mt->next;
			continue;
		}
		*p = mt->next;
		ev_timer_stop(srv->loop, &mt->t);
		free(mt);
	}
}

void module_timers_free(struct server *srv)
{
	while (srv->timers) {
		struct module_timer *mt = srv->timers;
		srv->timers = mt->next;
		ev_timer_stop(srv->loop, &mt->t);
		free(mt);
	}
}

struct module_fd {
	petrel_fd_fn *fn;
	void *arg;
};

static void module_fd_event(struct ev_loop *loop, int fd, int mask, void *arg)
{
	(void)loop;
	struct module_fd *mf = arg;
	mf->fn(fd, (mask & EV_READ ? PETREL_FD_READ : 0) | (mask & EV_WRITE ? PETREL_FD_WRITE : 0),
	       mf->arg);
}

static int h_work_submit(petrel_conf *self, petrel_work_fn *work, petrel_work_fn *done, void *arg)
{
	struct server *srv = self ? self->srv : NULL;
	if (!srv || !srv->filter_workers || !work || !done)
		return -1;
	workers_submit(srv->filter_workers, work, done, arg);
	return 0;
}

static int h_fd_watch(petrel_conf *self, int fd, int events, petrel_fd_fn *fn, void *arg)
{
	struct server *srv = self ? self->srv : NULL;
	const char *err;
	if (!srv || fd < 0)
		return -1;
	if (fd >= srv->nmodfds) {
		int n = srv->nmodfds ? srv->nmodfds : 64;
		while (n <= fd)
			n *= 2;
		srv->modfds = xrealloc(srv->modfds, (size_t)n * sizeof *srv->modfds);
		memset(srv->modfds + srv->nmodfds, 0, (size_t)(n - srv->nmodfds) * sizeof *srv->modfds);
		srv->nmodfds = n;
	}
	if (!events) {
		ev_fd_del(srv->loop, fd);
		xfree(&srv->modfds[fd]);
		return 0;
	}
	if (!fn)
		return -1;
	if (!srv->modfds[fd])
		srv->modfds[fd] = xcalloc(1, sizeof *srv->modfds[fd]);
	srv->modfds[fd]->fn = fn;
	srv->modfds[fd]->arg = arg;
	int mask = (events & PETREL_FD_READ ? EV_READ : 0) | (events & PETREL_FD_WRITE ? EV_WRITE : 0);
	return ev_fd_set(srv->loop, fd, mask, module_fd_event, srv->modfds[fd], &err);
}

void module_fds_free(struct server *srv)
{
	for (int i = 0; i < srv->nmodfds; i++)
		free(srv->modfds[i]);
	xfree(&srv->modfds);
	srv->nmodfds = 0;
}

/* --- recipients --- */

static int h_rcpt_add(petrel_txn *t, const char *address)
{
	char *local, *domain;
	if (!address || addr_split(address, &local, &domain) < 0)
		return -1;
	struct petrel_addr a = { .str = xstrdup(address), .local = local, .domain = domain };
	if (session_route(t->s, t, &a) != PETREL_ROUTE_OK) {
		addr_clear(&a);
		return -1;
	}
	t->rcpts = xrealloc(t->rcpts, (size_t)(t->nrcpt + 1) * sizeof *t->rcpts);
	t->rcpts[t->nrcpt++] = a;
	if (t->fd >= 0)
		t->env_dirty = true;
	return 0;
}

/* The destinations the recipients of t route to, in a scratch envelope
 * (routed again: the router answers the same for the same address). */
static struct qmsg *rcpts_dests(petrel_txn *t)
{
	struct server *srv = t->s->srv;
	struct module *router = t->s->gen->router;     /* the session's, as at RCPT */
	struct qmsg *m = qmsg_new(t->qid, "", 0);
	for (int i = 0; i < t->nrcpt; i++) {
		struct petrel_route r = { .qm = m, .rcpt = &t->rcpts[i], .srv = srv };
		(void)router->desc->router->route(router->state, &r, &t->rcpts[i]);
	}
	return m;
}

/* The recipient of t that m (from rcpts_dests) says reaches d, or NULL. */
static struct petrel_addr *reached_by(petrel_txn *t, const struct qmsg *m, const struct qdest *d)
{
	for (int i = 0; i < m->ndests; i++) {
		const struct qdest *o = &m->dests[i];
		if (strcmp(o->transport, d->transport) || strcasecmp(o->address, d->address))
			continue;
		for (int k = 0; k < t->nrcpt; k++)
			if (!strcmp(t->rcpts[k].str, o->orig))
				return &t->rcpts[k];
	}
	return NULL;
}

/*
 * The recipients first, then the destinations that only they lead to.  A
 * destination is delivered once however many recipients lead to it
 * (h_route_add) and is recorded under the first of them: one that a
 * recipient left still reaches (team@ an alias of bob@, then bob@ or a
 * redirect to bob@) stays, now under that recipient and with its DSN
 * parameters.  Dropping it lost the message: acknowledged, then discarded
 * with "no recipients left" (found by fuzz-session).
 */
static int h_rcpt_remove(petrel_txn *t, const char *address)
{
	int removed = 0;
	for (int i = 0; i < t->nrcpt;) {
		struct petrel_addr *a = &t->rcpts[i];
		if (address && strcasecmp(a->str, address)) {
			i++;
			continue;
		}
		addr_clear(a);
		memmove(a, a + 1, (size_t)(t->nrcpt - i - 1) * sizeof *a);
		t->nrcpt--;
		removed++;
	}
	struct qmsg *left = NULL;
	for (int i = 0; i < t->qm->ndests;) {
		struct qdest *d = &t->qm->dests[i];
		if (address && strcasecmp(d->orig, address)) {
			i++;
			continue;
		}
		if (address && !left)
			left = rcpts_dests(t);
		struct petrel_addr *a = address ? reached_by(t, left, d) : NULL;
		if (a) {
			free(d->orig);
			d->orig = xstrdup(a->str);
			d->notify = (unsigned char)a->notify;
			free(d->orcpt);
			d->orcpt = a->orcpt ? xstrdup(a->orcpt) : NULL;
			i++;
			continue;
		}
		qmsg_drop_dest(t->qm, i);
		removed++;
	}
	qmsg_free(&left);
	if (removed && t->fd >= 0)
		t->env_dirty = true;
	return removed ? 0 : -1;
}

static int h_rcpt_count(petrel_txn *t) { return t->nrcpt; }
static const char *h_rcpt_address(petrel_txn *t, int i)
{
	return i >= 0 && i < t->nrcpt ? t->rcpts[i].str : NULL;
}
static const char *h_session_auth_user(petrel_session *s) { return s->auth_user; }
static const char *h_txn_client_helo(petrel_txn *t) { return t->s->helo; }
static unsigned long long h_txn_size(petrel_txn *t) { return t->size; }

const struct petrel_host petrel_host_v1 = {
	.api_major = PETREL_API_MAJOR,
	.api_minor = PETREL_API_MINOR,
	.log = h_log,
	.conf_string = h_conf_string,
	.conf_int = h_conf_int,
	.conf_bool = h_conf_bool,
	.conf_list_count = h_conf_list_count,
	.conf_list_string = h_conf_list_string,
	.conf_error = h_conf_error,
	.session_client_addr = h_session_client_addr,
	.session_helo = h_session_helo,
	.session_may_relay = h_session_may_relay,
	.is_local_domain = h_is_local_domain,
	.txn_session = h_txn_session,
	.txn_qid = h_txn_qid,
	.txn_sender = h_txn_sender,
	.addr_string = h_addr_string,
	.addr_local = h_addr_local,
	.addr_domain = h_addr_domain,
	.txn_reply = h_txn_reply,
	.session_reply = h_session_reply,
	.route_add = h_route_add,
	.route_local_domain = h_route_local_domain,
	.delivery_qid = h_delivery_qid,
	.delivery_sender = h_delivery_sender,
	.delivery_recipient = h_delivery_recipient,
	.delivery_local = h_delivery_local,
	.delivery_domain = h_delivery_domain,
	.delivery_read = h_delivery_read,
	.delivery_status = h_delivery_status,
	.session_slot = h_session_slot,
	.txn_slot = h_txn_slot,
	.suspend = h_suspend,
	.resume = h_resume,
	.timer_add = h_timer_add,
	.timer_cancel = h_timer_cancel,
	.fd_watch = h_fd_watch,
	.header_count = msg_header_count,
	.header_name = msg_header_name,
	.header_value = msg_header_value,
	.header_decoded = msg_header_decoded,
	.header_add = msg_header_add,
	.header_change = msg_header_change,
	.header_remove = msg_header_remove,
	.rcpt_add = h_rcpt_add,
	.rcpt_remove = h_rcpt_remove,
	.rcpt_count = h_rcpt_count,
	.rcpt_address = h_rcpt_address,
	.part_index = part_index,
	.part_depth = part_depth,
	.part_is_multipart = part_is_multipart,
	.part_content_type = part_content_type,
	.part_filename = part_filename,
	.part_disposition = part_disposition,
	.part_flags = part_flags,
	.part_body = part_body,
	.session_auth_user = h_session_auth_user,
	.txn_client_helo = h_txn_client_helo,
	.txn_size = h_txn_size,
	.part_charset = part_charset,
	.work_submit = h_work_submit,
	.delivery_rcpt_count = h_delivery_rcpt_count,
	.delivery_rcpt = h_delivery_rcpt,
	.delivery_rcpt_orcpt = h_delivery_rcpt_orcpt,
	.delivery_rcpt_notify = h_delivery_rcpt_notify,
	.delivery_rcpt_result = h_delivery_rcpt_result,
	.delivery_relay = h_delivery_relay,
	.delivery_done = h_delivery_done,
	.delivery_rewind = h_delivery_rewind,
	.delivery_size = h_delivery_size,
	.delivery_flags = h_delivery_flags,
	.delivery_envid = h_delivery_envid,
	.delivery_nexthop = h_delivery_nexthop,
	.delivery_route_option = h_delivery_route_option,
	.global_string = h_global_string,
	.is_own_address = h_is_own_address,
};
