/*
 * generation.h - one configuration generation, and live reload.
 *
 * A generation is what one reading of petrel.conf made: the configuration,
 * its modules (own, or shared with the generation before when nothing a
 * module sees changed), the filter chains, the router, the listeners' views
 * (stage, chain, TLS key pair), the TLS contexts and the password table.
 * The process-wide parts (event loop, spool, queue, workers, control and
 * pickup sockets, metrics) live in struct server and survive a reload.
 *
 * Lifetime: counted references.  The server holds the current one; each
 * session holds the one it was accepted under, each delivery attempt the
 * one it started under, each password check its session's.  When the
 * count reaches 0 the generation is freed from a zero-delay timer (never
 * from inside a module's callback): its own modules' fini() runs then,
 * the sockets it no longer owns were handed on or closed at the reload.
 * Loop thread only.
 */
#ifndef PETREL_GENERATION_H
#define PETREL_GENERATION_H

#include "server.h"

struct generation {
	int refs;
	unsigned long id;                  /* 1 at start, +1 per reload */
	struct server *srv;
	struct config *cfg;
	struct modules mods;               /* its modules (module refs) */
	struct module **filters;           /* the global chain */
	int nfilters;
	struct module *router;
	struct listener *listeners;        /* one per cfg->listeners[i] */
	int nlisteners;
	struct listener *pickup;           /* the pickup socket's view, NULL: none */
	struct tls_server **tls;           /* per listener, NULL: none */
	struct auth_db *auth_db;           /* NULL when auth_passwords is unset */
	struct generation *next_dead;      /* on srv->dead_gens, waiting to be freed */
	struct generation *next_live;      /* on srv->live_gens */
};

/*
 * gen_build - a generation from cfg (taken over, freed on failure): load
 * the modules (sharing prev's where allowed, prev may be NULL), resolve
 * the chains; unless no_secrets, read the key pairs and the password
 * file.  Listeners are not bound here.  NULL with errs on any error.
 */
struct generation *gen_build(struct server *srv, struct config *cfg, struct generation *prev,
                             bool no_secrets, struct buf *errs) __attribute__((warn_unused_result));

struct generation *gen_ref(struct generation *g);
/* Drop a reference and clear *gp; at 0 the generation is freed soon
 * (gen_unref_now: at once, for exit and failed builds). */
void gen_unref(struct generation **gp);
void gen_unref_now(struct generation **gp);
/* At exit: free what is waiting on srv->dead_gens. */
void gens_free_dead(struct server *srv);

/*
 * server_reload - SIGHUP and the control socket's "reload" (who: for the
 * log): read the file
 * the daemon started with again (config_load, as petreld -t), build a new
 * generation, hand the listening sockets over (kept for addresses in both,
 * bound for new ones, closed for removed ones) and make it current.
 * 0: done, out holds notes (settings that need a restart, one per line);
 * -1: refused, out holds the "FILE:LINE: setting: reason" lines, and the
 * running generation is unchanged.
 */
int server_reload(struct server *srv, const char *who, struct buf *out) __attribute__((warn_unused_result));

#endif
