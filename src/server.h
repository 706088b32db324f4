/*
 * server.h - the daemon's context, passed explicitly (no global state).
 *
 * One struct server per process: the event loop, the spool, the queue,
 * the workers, the control and pickup sockets, the metrics, the live
 * sessions.  What one reading of petrel.conf made (configuration, modules,
 * chains, listeners' views, TLS contexts, passwords) is a generation
 * (generation.h): srv->gen is the current one, and a session or a
 * delivery keeps the one it started under.
 */
#ifndef PETREL_SERVER_H
#define PETREL_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "conn_limit.h"
#include "event.h"
#include "module_load.h"
#include "smtp_parse.h"

struct server;
struct generation;

/* A listener as one generation sees it; the socket (fd) is handed to the
 * next generation's listener for the same address at a reload (listen.c),
 * and is -1 here from then on. */
struct listener {
	struct server *srv;
	struct generation *gen;            /* the generation this view belongs to */
	int slot;                          /* stats slot (stats_listener_slot), -1: "other" */
	int fd;
	struct listener_conf *conf;
	struct module *stage;
	struct module **filters;           /* the chain after the stage */
	int nfilters;
	struct tls_server *tls;            /* tls = starttls/implicit: its key pair */
	/* accept() out of descriptors (EMFILE ...): not watched for a moment */
	struct ev_timer pause_timer;
	uint64_t warned_at;                /* last warning (ms), to rate-limit it */
	unsigned long unwarned;            /* failures since that warning */
};

struct server {
	struct generation *gen;            /* the current generation (generation.h) */
	struct config *cfg;                /* ... its configuration, for process-wide code */
	struct config *building;           /* while gen_build runs: what modules' init() reads */
	const char *conf_file;             /* -c FILE (absolute), NULL: the embedded default */
	unsigned long gen_counter;
	struct generation *dead_gens;      /* unreferenced, freed from gen_free_timer */
	struct generation *live_gens;      /* every generation not freed yet, the current too */
	struct ev_timer gen_free_timer;
	struct module **slot_owner;        /* module slot numbers in use (module_load.c) */
	int nslots;
	int max_connections_fit;           /* what RLIMIT_NOFILE allows (listen.c), 0: no cap */
	struct ev_loop *loop;
	struct spool *spool;
	struct queue *queue;
	struct control *control;           /* the control socket (control.c) */
	struct workers *workers;
	struct workers *filter_workers;    /* modules' blocking work, password hashing */
	struct auth_throttle *auth_throttle;   /* AUTH per client address (smtp_auth.c), made at first use */
	struct metrics *metrics;           /* GET /metrics and the spool gauges' timer (metrics.c) */
	struct petrel_session *sessions;   /* doubly linked */
	int nsessions;
	struct conn_counts clients;        /* sessions per client (client_connection_limit) */
	uint64_t full_warned_at;           /* max_connections warning, rate-limited (ms) */
	unsigned long full_unwarned;       /* refusals since that warning */
	bool stopping;
	uint64_t counter_accepted;         /* messages acknowledged with 250 */
	struct ev_timer stop_timer;
	struct smtp_cmd cmd;               /* parse scratch (large): loop thread only */
	unsigned long long pending_counter;
	struct module_timer *timers;       /* timers modules asked for */
	struct module_fd **modfds;         /* fd watches of modules, by fd */
	int nmodfds;
	unsigned long long timer_counter;
};

/* Session lifecycle (smtp_server.c). */
void session_accept(struct server *srv, struct listener *l, int fd);
void sessions_shutdown(struct server *srv);  /* 421 to each, close when safe */

/* Loop services lent to modules (host.c).  host_bind: the server whose
 * configuration and listeners the context-free host functions
 * (global_string, is_own_address) answer for. */
void host_bind(struct server *srv);
void module_timers_free(struct server *srv);
/* Cancel the timers module 'conf' still has (before its fini()). */
void module_timers_cancel(struct server *srv, const struct petrel_conf *conf);
void module_fds_free(struct server *srv);

/* Listeners (listen.c): bind and watch the current generation's. */
int listeners_open(struct server *srv, struct buf *errs) __attribute__((warn_unused_result));
void listeners_close(struct server *srv);
/* A generation's listener views, not bound (fd -1). */
void listener_init(struct server *srv, struct generation *g, struct listener *l,
                   struct listener_conf *lc);
void listener_release(struct server *srv, struct listener *l);   /* close if still open */
/* Reload: give ng the sockets of og for the addresses in both, bind the
 * new ones (all or nothing: -1 with errs, og untouched), close the ones
 * ng does not have, and watch ng's. */
int listeners_adopt(struct server *srv, struct generation *ng, struct generation *og,
                    struct buf *errs) __attribute__((warn_unused_result));
/* The pickup socket (pickup_socket), after the privilege drop and the pid
 * file lock; pickup_free closes and removes it at exit. */
int pickup_open(struct server *srv, struct buf *errs) __attribute__((warn_unused_result));
void pickup_free(struct server *srv);     /* close it, remove the path */
/* Fit max_connections to RLIMIT_NOFILE, once everything the daemon opens
 * at start is open: lowered with a warning, or -1 (errs) when not even
 * one session fits. */
int listeners_fd_budget(struct server *srv, struct buf *errs) __attribute__((warn_unused_result));

#endif
