/*
 * server.h - the daemon's context, passed explicitly (no global state).
 *
 * One struct server per configuration generation: the configuration, the
 * event loop, the module registry and the resolved chain, the spool, the
 * queue and the live sessions.
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

struct listener {
	struct server *srv;
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
	struct config *cfg;
	struct ev_loop *loop;
	struct modules mods;
	struct module **filters;
	int nfilters;
	struct module *router;
	struct listener *listeners;
	int nlisteners;
	struct listener *pickup;           /* pickup_socket (listen.c), NULL: none */
	struct spool *spool;
	struct queue *queue;
	struct control *control;           /* the control socket (control.c) */
	struct workers *workers;
	struct tls_server **tls;           /* per listener (config order), NULL: none */
	struct auth_db *auth_db;           /* auth_passwords, NULL when unset */
	struct auth_db **old_auth_dbs;     /* replaced by SIGHUP, freed at exit */
	int nold_auth_dbs;
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
void module_fds_free(struct server *srv);

/* Listeners (listen.c). */
int listeners_open(struct server *srv, struct buf *errs) __attribute__((warn_unused_result));
void listeners_close(struct server *srv);
/* The pickup socket (pickup_socket), after the privilege drop and the pid
 * file lock; pickup_free closes and removes it at exit. */
int pickup_open(struct server *srv, struct buf *errs) __attribute__((warn_unused_result));
void pickup_free(struct server *srv);
/* Fit max_connections to RLIMIT_NOFILE, once everything the daemon opens
 * at start is open: lowered with a warning, or -1 (errs) when not even
 * one session fits. */
int listeners_fd_budget(struct server *srv, struct buf *errs) __attribute__((warn_unused_result));

#endif
