/*
 * smtp_int.h - the smtp transport's internal interfaces, shared by its
 * files and by nothing else (modules include only the api/ headers).
 *
 *   smtp.c        shared glue: settings, init/fini, start()/stop(), the tick
 *   smtp_module.c the "smtp" module's descriptor and settings table
 *                 (modules/lmtp/lmtp.c is the "lmtp" one's, same sources)
 *   smtp_dns.c    c-ares on the event loop: next hop -> ordered addresses
 *   smtp_dest.c   per-destination queues, concurrency, dead state, reuse
 *   smtp_client.c one outbound connection: the SMTP client state machine
 *   smtp_syntax.c reply lines, EHLO keywords, next hops (pure; unit-tested)
 *
 * Layering: the client never names the destination code; it reports
 * through the callbacks in struct smtp_conn_ops that smtp_dest.c fills.
 * DNS answers through a continuation too.  Everything runs on the loop
 * thread; nothing here blocks on the network.
 *
 * Ownership: struct smtp owns the destination table, the DNS channel and
 * the TLS context; a destination owns its queued jobs and its
 * connections; a connection holds at most one job while it works on it.
 */
#ifndef PETREL_SMTP_INT_H
#define PETREL_SMTP_INT_H

#include <petrel/petrel.h>

#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct smtp;
struct smtp_dest;
struct smtp_conn;
struct smtp_dns;

enum smtp_tls_policy { TLS_NONE = 0, TLS_MAY, TLS_ENCRYPT, TLS_VERIFY };

/* Timeouts in milliseconds (settings are in seconds). */
struct smtp_timeouts {
	unsigned long long connect, greeting, helo, starttls, auth, mail, rcpt, data_init,
		data_block, data_done, rset, quit;
};

/* One address to connect to, in the order they are tried. */
struct smtp_target {
	char name[256];                 /* MX or relay host name, for logs and TLS */
	char ip[64];                    /* numeric */
	struct sockaddr_storage sa;
	socklen_t salen;
	int port;
	int pref;                       /* MX preference (0: no MX, a relay host) */
};

/* The answer to a next-hop lookup.  status: PETREL_DELIVERED (targets
 * set), PETREL_DEFER or PETREL_BOUNCE (reason set). */
struct smtp_resolved {
	int status;
	char reason[300];               /* "CODE X.Y.Z text" for a failure */
	struct smtp_target *targets;    /* owned by the receiver after the callback */
	int ntargets;
};

typedef void smtp_dns_done_fn(void *arg, struct smtp_resolved *r);

/* A message handed to start(): every recipient for one destination. */
struct smtp_job {
	petrel_delivery *d;
	struct smtp_dest *dest;
	struct smtp_job *next;          /* destination queue (FIFO) */
	int nrcpt;
	int left;                       /* recipients not yet reported */
	unsigned char *reported;        /* per recipient */
	unsigned char *accepted;        /* per recipient: RCPT got 2xx */
	int tries;                      /* connections that took it */
	char relay[340];                /* "name[ip]:port" once a server was reached */
};

/* What a connection reports to its owner (smtp_dest.c). */
struct smtp_conn_ops {
	/* The session is up (greeting, EHLO, TLS, AUTH) and wants a job:
	 * returns one (the connection owns it until job_done) or NULL (the
	 * connection goes idle or quits). */
	struct smtp_job *(*want_job)(struct smtp_conn *c, void *arg);
	/* Every recipient of the job was reported; the owner ends it. */
	void (*job_done)(struct smtp_conn *c, struct smtp_job *j, void *arg);
	/* No target could be used: reason says why ("4.4.1 ..." reply). loop:
	 * the next hop is this host.  The connection is gone after this. */
	void (*failed)(struct smtp_conn *c, const char *reason, int loop, void *arg);
	/* The connection closed after at least one session was up. */
	void (*closed)(struct smtp_conn *c, void *arg);
};

struct smtp_conn_params {
	const struct smtp_target *targets;   /* shared with the destination, outlives c */
	int ntargets;
	enum smtp_tls_policy tls;
	int implicit_tls;
	const char *auth_user, *auth_password;   /* NULL: no AUTH */
	int reuse_count;                     /* 0: no cap on messages */
};

/* What tells the two transports built from these sources apart. */
struct smtp_flavor {
	const char *name;               /* "smtp" or "lmtp": logs, errors */
	int lmtp;                       /* RFC 2033: LHLO, a reply per recipient
	                                 * after the dot, no MX, no loop check by
	                                 * greeting name, next hop from "nexthop" */
	int port;                       /* default port */
	const char *tls;                /* default policy */
};

/* The module. */
struct smtp {
	const struct petrel_host *host;
	petrel_conf *self;
	const char *name;
	int lmtp;
	const char *nexthop;            /* lmtp: the server when no route names one */
	const char *hostname;
	int port;
	int dest_concurrency, total_concurrency;
	unsigned long long reuse_ms, dead_ms;
	int reuse_count;
	enum smtp_tls_policy tls;
	const char *tls_ca_file;
	struct smtp_timeouts to;
	void *ssl_ctx;                  /* SSL_CTX * */
	struct smtp_dns *dns;
	/* smtp_dest.c */
	struct smtp_dest **dtab;
	size_t dtab_size, ndest;
	struct smtp_dest *starved;      /* waiting for a total_concurrency slot */
	int nconn;                      /* open connections, all destinations */
	struct smtp_conn *conns;        /* every connection, for the tick */
	unsigned long long tick_id;
	int stopping;
};

/* smtp.c */
/* init() and fini() of a module built from these sources. */
int smtp_setup(const struct petrel_host *host, petrel_conf *conf, void **state,
               const struct smtp_flavor *f);
void smtp_teardown(void *state);
extern const struct petrel_transport_ops smtp_transport_ops;
void smtp_tick_arm(struct smtp *m);
unsigned long long smtp_now(void);
/* Report recipient i (once) and count it; "CODE X.Y.Z text" reply. */
void smtp_job_result(struct smtp *m, struct smtp_job *j, int i, int result, const char *reply);
/* Report every recipient not yet reported. */
void smtp_job_result_all(struct smtp *m, struct smtp_job *j, int result, const char *reply);
void smtp_job_finish(struct smtp *m, struct smtp_job **j);

/* smtp_dns.c */
int smtp_dns_new(struct smtp *m, const char *server, struct smtp_dns **out, char *err, size_t errsize)
	__attribute__((warn_unused_result));
void smtp_dns_free(struct smtp_dns **dns);
/* Resolve a next hop: by MX (mx = 1) or the host itself.  done is called
 * once, on the loop (possibly before this returns for a numeric host),
 * unless smtp_dns_cancel(token) runs first.  Returns a token. */
unsigned long long smtp_dns_resolve(struct smtp_dns *dns, const char *name, int mx, int port,
                                    smtp_dns_done_fn *done, void *arg);
void smtp_dns_cancel(struct smtp_dns *dns, unsigned long long token);
void smtp_dns_tick(struct smtp_dns *dns);
int smtp_dns_busy(const struct smtp_dns *dns);

/* smtp_client.c */
/* A connection in two steps, so the owner can note it before any
 * callback: new() only allocates (NULL: out of memory); go() starts
 * connecting and may call failed() at once (c is gone then). */
struct smtp_conn *smtp_conn_new(struct smtp *m, const struct smtp_conn_params *p,
                                const struct smtp_conn_ops *ops, void *arg);
void smtp_conn_go(struct smtp_conn *c);
/* Close at once (stop, idle expiry); a job it holds is deferred with why. */
void smtp_conn_abort(struct smtp_conn *c, const char *why);
/* An idle connection takes a job (RSET first). */
void smtp_conn_give(struct smtp_conn *c, struct smtp_job *j);
int smtp_conn_idle(const struct smtp_conn *c);
unsigned long long smtp_conn_idle_since(const struct smtp_conn *c);
void smtp_conn_quit(struct smtp_conn *c);     /* polite QUIT, then close */
void smtp_conn_check_timeout(struct smtp_conn *c, unsigned long long now);
struct smtp_conn *smtp_conn_next(const struct smtp_conn *c);   /* m->conns list */
void *smtp_conn_owner(const struct smtp_conn *c);
/* In failed(): the server the reason came from ("name[ip]:port"), ""
 * when the last target was not reached (refused, timed out, this host). */
const char *smtp_conn_failed_at(const struct smtp_conn *c);

/* smtp_dest.c */
int smtp_dest_start(struct smtp *m, petrel_delivery *d, char *err, size_t errsize)
	__attribute__((warn_unused_result));
void smtp_dest_tick(struct smtp *m, unsigned long long now);
void smtp_dest_stop(struct smtp *m);
/* The operator flushes the queue: no destination is dead any more. */
void smtp_dest_flush(struct smtp *m);
int smtp_dest_busy(const struct smtp *m);

#endif
