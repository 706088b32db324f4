/*
 * host.c - the function table modules call (struct petrel_host, API 1.0).
 *
 * Each function maps an opaque API object to the core's struct.  Functions
 * used by transports (delivery_*) run on worker threads: they touch only
 * the delivery they are given.
 */
#include "delivery.h"
#include "log.h"
#include "module_load.h"
#include "server.h"
#include "session.h"

#include <ctype.h>
#include <errno.h>
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
	if (s) {
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
	return config_is_local_domain(s->srv->cfg, d);
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

static int h_route_add(petrel_route *r, const char *transport, const char *address)
{
	if (!transport || !*transport || strchr(transport, '\t') || strchr(transport, '\n'))
		return -1;
	struct qmsg *m = r->txn->qm;
	for (int i = 0; i < m->ndests; i++)
		if (!strcmp(m->dests[i].transport, transport) && !strcasecmp(m->dests[i].address, address)) {
			r->added++;       /* already a destination: deliver once */
			return 0;
		}
	if (!qmsg_add_dest(r->txn->qm, transport, address, r->rcpt->str)) {
		log_warn("%s: router gave an invalid address <%s>", r->txn->qid, address);
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
};
