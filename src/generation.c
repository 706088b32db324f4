/*
 * generation.c - configuration generations and live reload (SIGHUP,
 * petrelctl reload).
 *
 * A reload reads the file again with config_load (what petreld -t does)
 * and builds a whole new generation: modules, chains, router, TLS key
 * pairs, password table, listener views.  Any error: the lines are
 * returned, nothing running changes.  Success: the listening sockets are
 * handed over (listen.c listeners_adopt), the new generation becomes
 * srv->gen, and the old one lives on for the sessions and deliveries that
 * hold it, and is freed after the last (generation.h).
 *
 * Settings that belong to the process are read at start only; a changed
 * one keeps its running value, and the reload says so (a note per setting,
 * logged and returned): spool, user, control_socket, pickup_socket,
 * metrics_listen, delivery_workers, filter_workers.  max_connections
 * changes, within what RLIMIT_NOFILE allowed at start.
 *
 * Logs: "reload: generation N from FILE: ..." on success, "reload
 * refused: ..." with the error lines, "generation N freed" when the last
 * holder of an old one let go.
 */
#include "generation.h"
#include "auth.h"
#include "log.h"
#include "stats.h"
#include "tls.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- modules --- */

/* Load every module the configuration needs; errors go to errs. */
static int load_modules(struct generation *g, struct buf *errs)
{
	struct config *cfg = g->cfg;
	struct modules *mods = &g->mods;
	int bad = 0;
	for (int i = 0; i < cfg->nlisteners; i++) {
		struct listener_conf *lc = &cfg->listeners[i];
		if (!lc->stage)
			continue;
		config_setting_t *where = config_setting_get_member(lc->setting, "stage");
		struct module *m = module_get(mods, cfg, lc->stage, where, errs);
		if (m && !m->desc->stage) {
			config_error_at(cfg, where, errs, "module '%s' is not a stage", lc->stage);
			m = NULL;
		}
		bad |= !m;
	}
	/* the pickup socket's sessions take the mta stage */
	if (cfg->pickup_path && !module_get(mods, cfg, "mta",
	                                    config_lookup(&cfg->cfg, "pickup_socket"), errs))
		bad = 1;
	config_setting_t *fl = config_lookup(&cfg->cfg, "filters");
	g->filters = xcalloc((size_t)cfg->nfilters + 1, sizeof *g->filters);
	for (int i = 0; i < cfg->nfilters; i++) {
		config_setting_t *where = config_setting_get_elem(fl, (unsigned)i);
		struct module *m = module_get(mods, cfg, cfg->filters[i], where, errs);
		if (m && !m->desc->filter) {
			config_error_at(cfg, where, errs, "module '%s' is not a filter", cfg->filters[i]);
			m = NULL;
		}
		if (m)
			g->filters[g->nfilters++] = m;
		bad |= !m;
	}
	for (int i = 0; i < cfg->nlisteners; i++) {
		struct listener_conf *lc = &cfg->listeners[i];
		for (int k = 0; k < lc->nfilters; k++) {
			config_setting_t *where = config_setting_get_elem(lc->filters_setting, (unsigned)k);
			struct module *m = module_get(mods, cfg, lc->filters[k], where, errs);
			if (m && !m->desc->filter) {
				config_error_at(cfg, where, errs, "module '%s' is not a filter", lc->filters[k]);
				m = NULL;
			}
			bad |= !m;
		}
	}
	config_setting_t *rw = config_lookup(&cfg->cfg, "router");
	g->router = module_get(mods, cfg, cfg->router, rw, errs);
	if (g->router && !g->router->desc->router) {
		config_error_at(cfg, rw, errs, "module '%s' is not a router", cfg->router);
		g->router = NULL;
	}
	bad |= !g->router;
	config_setting_t *mb = config_lookup(&cfg->cfg, "modules");
	for (int i = 0; mb && i < config_setting_length(mb); i++) {
		config_setting_t *b = config_setting_get_elem(mb, (unsigned)i);
		bad |= !module_get(mods, cfg, config_setting_name(b), b, errs);
	}
	/* the transports routes name, so that a misspelt one is an error
	 * here and not a deferral of every message it routes */
	config_setting_t *rl = config_lookup(&cfg->cfg, "routes");
	for (int i = 0; i < cfg->nroutes; i++) {
		const char *t = cfg->routes[i].transport;
		if (!t)
			continue;
		config_setting_t *r = rl ? config_setting_get_elem(rl, (unsigned)i) : NULL;
		config_setting_t *where = r ? config_setting_get_member(r, "transport") : NULL;
		struct module *m = module_get(mods, cfg, t, where, errs);   /* or the one loaded */
		if (m && !m->desc->transport) {
			config_error_at(cfg, where, errs, "module '%s' is not a transport", t);
			m = NULL;
		}
		bad |= !m;
	}
	/* The default local transport, unless a block above already tried it. */
	if (!config_lookup(&cfg->cfg, "modules.maildir") && !module_find(mods, "maildir"))
		bad |= !module_get(mods, cfg, "maildir", NULL, errs);
	return bad ? -1 : 0;
}

/* --- secrets --- */

/* Read the listeners' key pairs and the password file into tls[] and
 * *db, all or nothing (the caller frees what was read on -1). */
static int read_secrets(struct config *cfg, struct tls_server **tls, struct auth_db **db,
                        struct buf *errs)
{
	int bad = 0;
	char err[512];
	for (int i = 0; i < cfg->nlisteners; i++) {
		struct listener_conf *lc = &cfg->listeners[i];
		if (lc->tls == TLS_NONE || !lc->tls_cert_file || !lc->tls_key_file)
			continue;
		const char *file;
		if (tls_server_new(lc->tls_cert_file, lc->tls_key_file, &tls[i], &file, err,
		                   sizeof err) < 0) {
			config_error_at(cfg, file == lc->tls_key_file ? lc->tls_key_setting
			                : lc->tls_cert_setting, errs, "%s", err);
			bad = 1;
		}
	}
	if (cfg->auth_passwords) {
		struct buf why = {0};
		*db = auth_db_load(cfg->auth_passwords, &why);
		if (!*db) {
			config_error_at(cfg, config_lookup(&cfg->cfg, "auth_passwords"), errs,
			                "%s: bad password file (below)", cfg->auth_passwords);
			buf_add(errs, why.data, why.len);
			bad = 1;
		}
		buf_free(&why);
	}
	return bad ? -1 : 0;
}

/* relayhost_credentials: read again; the same file that the daemon, no
 * longer root, cannot read keeps what was read at start. */
static int read_credentials(struct config *cfg, const struct config *prev, struct buf *errs)
{
	struct buf why = {0};
	int r = config_read_credentials(cfg, &why);
	if (r < 0 && prev && cfg->relayhost_credentials && prev->relayhost_credentials &&
	    !strcmp(cfg->relayhost_credentials, prev->relayhost_credentials)) {
		config_copy_credentials(cfg, prev);
		r = 0;
	} else if (r < 0 && why.len) {
		buf_add(errs, why.data, why.len);
	}
	buf_free(&why);
	return r;
}

/* --- listener views --- */

static void views_make(struct server *srv, struct generation *g)
{
	struct config *cfg = g->cfg;
	g->listeners = xcalloc((size_t)cfg->nlisteners + 1, sizeof *g->listeners);
	g->nlisteners = cfg->nlisteners;
	for (int i = 0; i < cfg->nlisteners; i++) {
		struct listener *l = &g->listeners[i];
		struct listener_conf *lc = &cfg->listeners[i];
		listener_init(srv, g, l, lc);
		struct buf scratch = {0};     /* loaded above, or already reported */
		l->stage = lc->stage ? module_get(&g->mods, cfg, lc->stage, NULL, &scratch) : NULL;
		l->tls = g->tls ? g->tls[i] : NULL;
		if (lc->filters) {
			l->filters = xcalloc((size_t)lc->nfilters + 1, sizeof *l->filters);
			for (int k = 0; k < lc->nfilters; k++) {
				struct module *m = module_get(&g->mods, cfg, lc->filters[k], NULL, &scratch);
				if (m)
					l->filters[l->nfilters++] = m;
			}
		} else {
			l->filters = g->filters;
			l->nfilters = g->nfilters;
		}
		buf_free(&scratch);
	}
	if (cfg->pickup_path) {
		struct listener *l = xcalloc(1, sizeof *l);
		struct listener_conf *lc = xcalloc(1, sizeof *lc);
		lc->listen = xstrdup(cfg->pickup_path);
		lc->stage = xstrdup("mta");
		lc->tls = TLS_NONE;
		lc->setting = config_lookup(&cfg->cfg, "pickup_socket");
		listener_init(srv, g, l, lc);
		l->stage = module_find(&g->mods, "mta");
		l->filters = g->filters;
		l->nfilters = g->nfilters;
		g->pickup = l;
	}
}

/* --- lifetime --- */

static void gen_free(struct generation *g)
{
	struct server *srv = g->srv;
	for (struct generation **p = &srv->live_gens; *p; p = &(*p)->next_live)
		if (*p == g) {
			*p = g->next_live;
			break;
		}
	for (int i = 0; i < g->nlisteners; i++) {
		struct listener *l = &g->listeners[i];
		listener_release(srv, l);
		if (l->filters != g->filters)
			free(l->filters);
	}
	free(g->listeners);
	if (g->pickup) {
		listener_release(srv, g->pickup);
		free(g->pickup->conf->listen);
		free(g->pickup->conf->stage);
		free(g->pickup->conf);
		free(g->pickup);
	}
	modules_free(&g->mods);
	free(g->filters);
	for (int i = 0; g->tls && i < g->cfg->nlisteners; i++)
		tls_server_free(&g->tls[i]);
	free(g->tls);
	auth_db_free(&g->auth_db);
	config_free(&g->cfg);
	free(g);
}

struct generation *gen_ref(struct generation *g)
{
	if (g)
		g->refs++;
	return g;
}

static void free_dead(struct ev_loop *loop, void *arg)
{
	(void)loop;
	gens_free_dead(arg);
}

void gen_unref(struct generation **gp)
{
	struct generation *g = *gp;
	*gp = NULL;
	if (!g || --g->refs > 0)
		return;
	struct server *srv = g->srv;
	g->next_dead = srv->dead_gens;
	srv->dead_gens = g;
	if (!ev_timer_armed(&srv->gen_free_timer))
		ev_timer_start(srv->loop, &srv->gen_free_timer, 0);
}

void gen_unref_now(struct generation **gp)
{
	struct generation *g = *gp;
	*gp = NULL;
	if (g && --g->refs <= 0)
		gen_free(g);
}

void gens_free_dead(struct server *srv)
{
	if (srv->loop && ev_timer_armed(&srv->gen_free_timer))
		ev_timer_stop(srv->loop, &srv->gen_free_timer);
	while (srv->dead_gens) {
		struct generation *g = srv->dead_gens;
		srv->dead_gens = g->next_dead;
		unsigned long id = g->id;
		gen_free(g);
		log_info("configuration generation %lu freed", id);
	}
}

struct generation *gen_build(struct server *srv, struct config *cfg, struct generation *prev,
                             bool no_secrets, struct buf *errs)
{
	struct generation *g = xcalloc(1, sizeof *g);
	g->refs = 1;
	g->id = ++srv->gen_counter;
	if (g->id == 1)          /* the first: a zeroed timer would look armed */
		ev_timer_init(&srv->gen_free_timer, free_dead, srv);
	g->srv = srv;
	g->cfg = cfg;
	g->mods.srv = srv;
	g->next_live = srv->live_gens;
	srv->live_gens = g;
	if (prev) {
		g->mods.share = &prev->mods;
		g->mods.share_cfg = prev->cfg;
	}
	size_t before = errs->len;
	srv->building = cfg;
	(void)load_modules(g, errs);
	g->mods.share = NULL;
	g->mods.share_cfg = NULL;
	g->tls = xcalloc((size_t)cfg->nlisteners + 1, sizeof *g->tls);
	if (!no_secrets) {
		(void)read_credentials(cfg, prev ? prev->cfg : NULL, errs);
		(void)read_secrets(cfg, g->tls, &g->auth_db, errs);
	}
	for (int k = 0; k < g->mods.n; k++)
		g->mods.v[k]->conf.errs = NULL;   /* the buffer is the caller's */
	views_make(srv, g);
	srv->building = NULL;
	if (errs->len > before) {
		gen_unref_now(&g);
		return NULL;
	}
	return g;
}

/* --- reload --- */

static bool same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static void keep_string(struct config *nc, char **nv, char *const *ov, const char *name,
                        struct buf *notes)
{
	if (same(*nv, *ov))
		return;
	buf_addf(notes, "%s: %s: changed, takes effect at the next start (the running value "
	         "stays)\n", nc->file, name);
	free(*nv);
	*nv = *ov ? xstrdup(*ov) : NULL;
}

static void keep_int(struct config *nc, int *nv, int ov, const char *name, struct buf *notes)
{
	if (*nv == ov)
		return;
	buf_addf(notes, "%s: %s: changed, takes effect at the next start (the running value "
	         "%d stays)\n", nc->file, name, ov);
	*nv = ov;
}

/* The process's settings: the running values stay in the new configuration. */
static void keep_process_settings(struct server *srv, struct config *nc, const struct config *oc,
                                  struct buf *notes)
{
	keep_string(nc, &nc->spool, &oc->spool, "spool", notes);
	keep_string(nc, &nc->user, &oc->user, "user", notes);
	if (!same(nc->control_path, oc->control_path)) {
		keep_string(nc, &nc->control_path, &oc->control_path, "control_socket", notes);
		free(nc->control_socket);
		nc->control_socket = oc->control_socket ? xstrdup(oc->control_socket) : NULL;
	}
	if (!same(nc->pickup_path, oc->pickup_path)) {
		keep_string(nc, &nc->pickup_path, &oc->pickup_path, "pickup_socket", notes);
		free(nc->pickup_socket);
		nc->pickup_socket = oc->pickup_socket ? xstrdup(oc->pickup_socket) : NULL;
	}
	keep_string(nc, &nc->metrics_listen, &oc->metrics_listen, "metrics_listen", notes);
	keep_int(nc, &nc->delivery_workers, oc->delivery_workers, "delivery_workers", notes);
	keep_int(nc, &nc->filter_workers, oc->filter_workers, "filter_workers", notes);
	if (srv->max_connections_fit > 0 && nc->max_connections > srv->max_connections_fit) {
		buf_addf(notes, "%s: max_connections: %d lowered to %d (RLIMIT_NOFILE at start)\n",
		         nc->file, nc->max_connections, srv->max_connections_fit);
		nc->max_connections = srv->max_connections_fit;
	}
}

static void log_lines(const char *prefix, const struct buf *b)
{
	if (!b->data)
		return;
	const char *p = b->data;
	while (*p) {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);
		log_warn("%s%.*s", prefix, n, p);
		p += n + (nl != NULL);
	}
}

int server_reload(struct server *srv, const char *who, struct buf *out)
{
	struct buf errs = {0}, notes = {0};
	if (srv->stopping) {
		buf_adds(out, "the daemon is stopping\n");
		return -1;
	}
	struct generation *old = srv->gen;
	/* the whole reload runs on the event loop (the log says how long it
	 * held it: a rule file is compiled here, not in the sessions) */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct config *cfg = config_load(srv->conf_file, &errs);
	struct generation *g = NULL;
	if (cfg) {
		keep_process_settings(srv, cfg, old->cfg, &notes);
		g = gen_build(srv, cfg, old, false, &errs);
	}
	if (g && listeners_adopt(srv, g, old, &errs) < 0)
		gen_unref_now(&g);
	if (!g) {
		srv->gen_counter = old->id;      /* numbers count generations that ran */
		struct buf one = {0};            /* one log line: "; " between the errors */
		for (size_t k = 0; k < errs.len; k++) {
			if (errs.data[k] != '\n')
				buf_add(&one, &errs.data[k], 1);
			else if (k + 1 < errs.len)
				buf_adds(&one, "; ");
		}
		log_error("%s: reload refused, generation %lu (%s) stays: %s", who, old->id,
		          old->cfg->file, one.data ? one.data : "?");
		buf_free(&one);
		if (errs.len)
			buf_add(out, errs.data, errs.len);
		buf_free(&errs);
		buf_free(&notes);
		return -1;
	}
	srv->gen = g;
	srv->cfg = g->cfg;
	for (int k = 0; k < g->mods.n; k++)
		if (g->mods.v[k]->desc->transport)
			stats_add_transport_name(g->mods.v[k]->desc->name);
	log_lines("reload: ", &notes);
	int ntls = 0;
	for (int i = 0; i < g->nlisteners; i++)
		ntls += g->tls[i] != NULL;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	log_info("%s: reloaded: generation %lu from %s: %d TLS key pair(s)%s, %d listener(s), "
	         "%d module(s) (%d kept from generation %lu); sessions open keep theirs; %.1f ms",
	         who, g->id, g->cfg->file, ntls, g->auth_db ? " and the password file" : "",
	         g->nlisteners, g->mods.n, g->mods.nshared, old->id, ms);
	if (notes.len)
		buf_add(out, notes.data, notes.len);
	gen_unref(&old);
	buf_free(&errs);
	buf_free(&notes);
	return 0;
}
