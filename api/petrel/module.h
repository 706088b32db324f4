/*
 * petrel/module.h - what a petrel module is.
 *
 * A module is a shared object that exports exactly one constant object,
 * named by PETREL_MODULE_SYMBOL, of type struct petrel_module.  Write it
 * with the PETREL_MODULE() macro, which fills in the API version:
 *
 *     #include <petrel/petrel.h>
 *
 *     static int my_rcpt(void *state, petrel_txn *t, petrel_addr *rcpt) { ... }
 *     static const struct petrel_hooks hooks = { .rcpt = my_rcpt };
 *     PETREL_MODULE(
 *         .name = "myfilter",
 *         .summary = "refuses what I dislike",
 *         .filter = &hooks,
 *     );
 *
 * The daemon reads api_major/api_minor and the name before it calls any of
 * the module's functions, and refuses a module built for another major
 * version or whose name is already taken.
 *
 * Threads: hooks and init/fini run on the event loop thread and must not
 * block.  A transport's deliver() runs on a worker thread; it may block
 * and may run concurrently with other deliver() calls of the same module.
 * A transport's check(), start() and stop() (1.2) run on the loop and
 * must not block.
 */
#ifndef PETREL_MODULE_H
#define PETREL_MODULE_H

#include <stddef.h>
#include <petrel/version.h>
#include <petrel/host.h>

#define PETREL_MODULE_SYMBOL "petrel_module"

/* Verdicts returned by hooks. */
enum petrel_verdict {
	PETREL_CONTINUE = 0,  /* no objection; the next module decides */
	PETREL_ACCEPT = 1,    /* accept; skip the rest of the chain for this step */
	PETREL_REJECT = 2,    /* permanent refusal (5xx); see host->txn_reply */
	PETREL_TEMPFAIL = 3,  /* temporary refusal (4xx); see host->txn_reply */
	PETREL_DISCARD = 4,   /* accept with 250 and drop the message (logged) */
	PETREL_HOLD = 5,      /* accept with 250 and keep it in the spool, held,
	                       * until an operator releases it (petrelctl) */
	PETREL_PENDING = 6,   /* the hook waits on I/O or a timer: it has called
	                       * host->suspend() and will call host->resume() */
};

/* Setting types for a module's configuration block. */
enum petrel_setting_type {
	PETREL_SET_END = 0,   /* terminates a settings table */
	PETREL_SET_STRING,
	PETREL_SET_INT,
	PETREL_SET_BOOL,
	PETREL_SET_STRING_LIST,
};

/* One setting of a module's block: the daemon rejects unknown names and
 * wrong types, with file and line, before init() runs. */
struct petrel_setting {
	const char *name;
	enum petrel_setting_type type;
	int required;
	const char *help;     /* one line, shown in docs and errors */
};

/*
 * Hooks run for a listener's stage module first, then for each module in
 * the filter chain (the listener's 'filters', else the top-level one), in
 * configuration order.  Any hook may be NULL.
 *
 * REJECT or TEMPFAIL stops the step and the reply set with host->txn_reply
 * (or host->session_reply) is sent, a default one if none was set.
 * ACCEPT skips the rest of the chain for this step.  DISCARD and HOLD are
 * decisions about the whole message: they take effect at end of message
 * (the client still gets 250), whichever hook returned them; returned at
 * connect or HELO they apply to every message of the session.
 * PENDING: see host->suspend.
 *
 * The message hooks (headers, part, eom) run after the final dot, before
 * the message is queued: the client waits for their verdict.
 */
struct petrel_hooks {
	int (*connect)(void *state, petrel_session *s);
	int (*helo)(void *state, petrel_session *s, const char *helo);
	/* After AUTH, once the password was checked: user is the login,
	 * success 1 (right password) or 0.  Verdict: REJECT or TEMPFAIL turns
	 * a success into a refusal (the reply: host->session_reply).
	 * host->session_auth_user is still NULL here: the login counts only
	 * once every module agreed. */
	int (*auth)(void *state, petrel_session *s, const char *user, int success);
	int (*mail)(void *state, petrel_txn *t, petrel_addr *sender);
	int (*rcpt)(void *state, petrel_txn *t, petrel_addr *rcpt);
	/* The top-level header section is complete: host->header_* read it. */
	int (*headers)(void *state, petrel_txn *t);
	/* Each MIME part in document order (the message itself is part 0). */
	int (*part)(void *state, petrel_txn *t, petrel_part *p);
	int (*eom)(void *state, petrel_txn *t);   /* message complete, before queueing */
	/* The message is queued (durable; verdict ignored).  Not called for
	 * refused or discarded messages. */
	void (*queued)(void *state, petrel_txn *t);
	/* The transaction or session ends (queued, refused, RSET, disconnect):
	 * free what the module keeps in its slots. */
	void (*txn_end)(void *state, petrel_txn *t);
	/* Also after a STARTTLS handshake, which starts the session over:
	 * connect runs again for the same session, its slot emptied. */
	void (*session_end)(void *state, petrel_session *s);
	/* api 1.0 ends here; new hooks are appended. */
};

/* Router results. */
enum petrel_route_result {
	PETREL_ROUTE_OK = 0,       /* host->route_add() was called at least once */
	PETREL_ROUTE_UNKNOWN = 1,  /* no such mailbox: 550 5.1.1 */
	PETREL_ROUTE_TEMPFAIL = 2, /* cannot decide now: 451 4.3.0 */
};

struct petrel_router_ops {
	/* Map one recipient to destinations with host->route_add(r, transport,
	 * address); aliases may add several.  Called at RCPT time, on the loop. */
	int (*route)(void *state, petrel_route *r, petrel_addr *rcpt);
};

/* Transport results. */
enum petrel_delivery_result {
	PETREL_DELIVERED = 0,
	PETREL_DEFER = 1,          /* temporary: stays queued, retried later */
	PETREL_BOUNCE = 2,         /* permanent: the sender is told */
	PETREL_RELAYED = 3,        /* 1.2: delivered to a next hop that does not
	                            * take DSN: a NOTIFY=SUCCESS recipient gets a
	                            * "relayed" report (RFC 3461 4.1) */
	PETREL_DELIVERED_FINAL = 4,/* 1.3: put in the mailbox by an asynchronous
	                            * transport (LMTP): a NOTIFY=SUCCESS recipient
	                            * gets a "delivered" report, as from a
	                            * synchronous transport's PETREL_DELIVERED
	                            * (an asynchronous PETREL_DELIVERED means a
	                            * next hop took NOTIFY along and reports) */
};

/* 1.2: what a transport's check() answers at RCPT time. */
enum petrel_check_result {
	PETREL_CHECK_OK = 0,       /* the transport can take this address */
	PETREL_CHECK_REFUSE = 1,   /* never: the RCPT is refused (550 5.1.1 or the reply given) */
	PETREL_CHECK_TEMPFAIL = 2, /* not now: 450 4.2.0 or the reply given */
};

/* 1.2: DSN NOTIFY (RFC 3461) of a recipient, host->delivery_rcpt_notify. */
#define PETREL_NOTIFY_SUCCESS 0x01
#define PETREL_NOTIFY_FAILURE 0x02
#define PETREL_NOTIFY_DELAY   0x04
#define PETREL_NOTIFY_NEVER   0x08

/* 1.2: message facts, host->delivery_flags. */
#define PETREL_DLV_8BITMIME 0x01   /* BODY=8BITMIME was given */
#define PETREL_DLV_SMTPUTF8 0x02   /* SMTPUTF8 was given: needs it at the next hop */
#define PETREL_DLV_RET_FULL 0x04   /* DSN RET=FULL */
#define PETREL_DLV_RET_HDRS 0x08   /* DSN RET=HDRS */

struct petrel_transport_ops {
	/* Deliver one message to one recipient.  Runs on a worker thread and
	 * may block.  Set a human-readable status with host->delivery_status. */
	int (*deliver)(void *state, petrel_delivery *d);
	/* api 1.0 ends here; the daemon reads the fields below only from a
	 * module whose api_minor is at least the one each names. */

	/* 1.2: may this transport take mail for address (the final
	 * recipient the router chose, split into local part and lower-case
	 * domain)?  Called on the loop at RCPT time for each destination
	 * host->route_add() adds; must not block.  For REFUSE or TEMPFAIL it
	 * may write a whole reply ("550 5.1.1 <a/b@x>: bad mailbox name") into
	 * reply (size bytes); an empty reply gets the default.  NULL: every
	 * address is taken. */
	int (*check)(void *state, const char *address, const char *local, const char *domain,
	             char *reply, size_t size);

	/* 1.2: asynchronous delivery on the event loop.  When set, the daemon
	 * calls start() instead of deliver(), on the loop, with every pending
	 * recipient of one message that has this transport and the same next
	 * hop (host->delivery_rcpt_count / delivery_rcpt / delivery_nexthop).
	 * start() must not block: it returns at once and the transport goes
	 * on from fd watches and timers (host->fd_watch, timer_add).  It
	 * reports each recipient once with host->delivery_rcpt_result() and
	 * then calls host->delivery_done(d) exactly once, on the loop; d is
	 * gone after that.  A recipient not reported by then is deferred.
	 * Returns 0, or -1 when nothing was started (done() must not be
	 * called then; every recipient is deferred with the status set by
	 * host->delivery_status).  The transport queues deliveries for one
	 * destination itself, and decides how many connections it opens. */
	int (*start)(void *state, petrel_delivery *d);
	/* 1.2: the daemon is stopping: finish or abandon every started
	 * delivery now (report what is known, done() for each) without
	 * waiting on the network.  NULL for a transport without start(). */
	void (*stop)(void *state);

	/* 1.3: an operator asked for the queue to be retried now (petrelctl
	 * flush, sendmail -q), just before the daemon starts the deliveries
	 * again: forget what would defer them without trying (a destination
	 * marked dead after failed connections), as Postfix's flush revives
	 * dead queues.  On the loop; must not block.  NULL: nothing to forget. */
	void (*flush)(void *state);
};

struct petrel_module {
	/* These two fields stay first in every API version. */
	unsigned api_major;
	unsigned api_minor;
	const char *name;
	const char *version;
	const char *summary;
	const struct petrel_setting *settings;   /* NULL or ended by PETREL_SET_END */
	/* Called once after loading, with the module's own configuration
	 * block (may be empty).  Store private state in *state.  Return 0, or
	 * -1 after reporting the problem with host->conf_error().  Timers and
	 * fd watches may be set here already.  fini() is called only for a
	 * module whose init() ran (also when it failed: free what it took). */
	int (*init)(const struct petrel_host *host, petrel_conf *conf, void **state);
	/* 'conf' also identifies the module to the host for the rest of its
	 * life: pass it to host->session_slot / host->txn_slot. */
	void (*fini)(void *state);
	const struct petrel_hooks *stage;        /* usable as a listener stage */
	const struct petrel_hooks *filter;       /* usable in the filter chain */
	const struct petrel_router_ops *router;
	const struct petrel_transport_ops *transport;
	/* api 1.0 ends here; new fields are appended. */
};

#ifdef __cplusplus
#define PETREL_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define PETREL_EXPORT __attribute__((visibility("default")))
#endif

#define PETREL_MODULE(...) \
	PETREL_EXPORT const struct petrel_module petrel_module = { \
		.api_major = PETREL_API_MAJOR, \
		.api_minor = PETREL_API_MINOR, \
		__VA_ARGS__ \
	}

#endif
