/*
 * petrel/host.h - what the daemon offers a module.
 *
 * The host is a table of functions handed to init().  It only ever grows
 * at its end (see petrel/version.h).  Everything it hands out is opaque.
 *
 * Lifetimes: a petrel_session lives for one connection; a petrel_txn from
 * MAIL to the end of the message (or RSET); a petrel_addr as long as its
 * transaction; a petrel_delivery for one deliver() call.  Strings returned
 * by accessors belong to the host and live as long as the object.
 */
#ifndef PETREL_HOST_H
#define PETREL_HOST_H

#include <stddef.h>
#include <sys/types.h>

typedef struct petrel_session petrel_session;
typedef struct petrel_txn petrel_txn;
typedef struct petrel_addr petrel_addr;
typedef struct petrel_conf petrel_conf;
typedef struct petrel_route petrel_route;
typedef struct petrel_delivery petrel_delivery;
typedef struct petrel_part petrel_part;

/* MIME malformation flags (host->part_flags). */
#define PETREL_MIME_BAD_BOUNDARY 0x01  /* closing boundary missing */
#define PETREL_MIME_NO_BOUNDARY  0x02  /* multipart without boundary */
#define PETREL_MIME_BAD_BASE64   0x04
#define PETREL_MIME_BAD_QP       0x08
#define PETREL_MIME_TOO_DEEP     0x10
#define PETREL_MIME_TOO_MANY     0x20
#define PETREL_MIME_BAD_HEADER   0x40
#define PETREL_MIME_BAD_ENCODING 0x80

typedef void petrel_timer_fn(void *arg);
typedef void petrel_work_fn(void *arg);
typedef void petrel_fd_fn(int fd, int events, void *arg);
#define PETREL_FD_READ  1
#define PETREL_FD_WRITE 2

enum petrel_log_grade { PETREL_LOG_INFO = 0, PETREL_LOG_WARN, PETREL_LOG_ERROR };

#define PETREL_PRINTF(a, b) __attribute__((format(printf, a, b)))

struct petrel_host {
	unsigned api_major;
	unsigned api_minor;

	/* Logging: one line per call, no trailing newline. */
	void (*log)(enum petrel_log_grade grade, const char *fmt, ...) PETREL_PRINTF(2, 3);

	/* Configuration block of the module (settings declared in its table).
	 * Getters return 1 if set, 0 if absent (out untouched). */
	int (*conf_string)(petrel_conf *c, const char *name, const char **out);
	int (*conf_int)(petrel_conf *c, const char *name, long long *out);
	int (*conf_bool)(petrel_conf *c, const char *name, int *out);
	int (*conf_list_count)(petrel_conf *c, const char *name);
	const char *(*conf_list_string)(petrel_conf *c, const char *name, int i);
	/* Report a problem with a setting ("FILE:LINE: modules.NAME.setting:
	 * text"); the daemon refuses to start. */
	void (*conf_error)(petrel_conf *c, const char *name, const char *fmt, ...) PETREL_PRINTF(3, 4);

	/* Session. */
	const char *(*session_client_addr)(petrel_session *s);  /* "127.0.0.1" */
	const char *(*session_helo)(petrel_session *s);         /* NULL before HELO */
	int (*session_may_relay)(petrel_session *s);            /* client in relay_networks */
	int (*is_local_domain)(petrel_session *s, const char *domain);

	/* Transaction. */
	petrel_session *(*txn_session)(petrel_txn *t);
	const char *(*txn_qid)(petrel_txn *t);
	petrel_addr *(*txn_sender)(petrel_txn *t);

	/* Addresses. */
	const char *(*addr_string)(petrel_addr *a);   /* "local@domain" as given, "" for <> */
	const char *(*addr_local)(petrel_addr *a);    /* local part, unquoted */
	const char *(*addr_domain)(petrel_addr *a);   /* lower-case domain, "" if none */

	/* Set the reply for a REJECT or TEMPFAIL verdict: "CODE X.Y.Z text",
	 * e.g. "554 5.7.1 Relay access denied".  Returns 0, or -1 if the text
	 * is not a valid 4xx/5xx reply with enhanced code (the default reply is
	 * used then).  For a session-level hook pass the session's reply via
	 * session_reply. */
	int (*txn_reply)(petrel_txn *t, const char *fmt, ...) PETREL_PRINTF(2, 3);
	int (*session_reply)(petrel_session *s, const char *fmt, ...) PETREL_PRINTF(2, 3);

	/* Routing: add a destination for the recipient being routed.
	 * transport is a module name ("maildir"); address is the final
	 * recipient ("user@domain").  Returns 0 or -1 (unknown transport). */
	int (*route_add)(petrel_route *r, const char *transport, const char *address);
	const char *(*route_local_domain)(petrel_route *r, const char *domain); /* non-NULL if local */

	/* Delivery (worker thread).  The message is read from the start with
	 * delivery_read, which returns the number of bytes (0 at the end) or -1
	 * with errno set.  Lines end in CRLF, as received. */
	const char *(*delivery_qid)(petrel_delivery *d);
	const char *(*delivery_sender)(petrel_delivery *d);     /* "" for <> */
	const char *(*delivery_recipient)(petrel_delivery *d);  /* final address */
	const char *(*delivery_local)(petrel_delivery *d);      /* its local part, unquoted */
	const char *(*delivery_domain)(petrel_delivery *d);
	ssize_t (*delivery_read)(petrel_delivery *d, void *buf, size_t size);
	void (*delivery_status)(petrel_delivery *d, const char *fmt, ...) PETREL_PRINTF(2, 3);

	/* Per-module state slots, one per session and one per transaction,
	 * NULL at first.  'self' is the petrel_conf given to init().  Free
	 * what you store in the txn_end / session_end hooks. */
	void **(*session_slot)(petrel_session *s, petrel_conf *self);
	void **(*txn_slot)(petrel_txn *t, petrel_conf *self);

	/* Suspending a hook: call suspend(session) in the hook (for a txn:
	 * host->txn_session(t)), return PETREL_PENDING,
	 * and later call resume(id, verdict) on the loop thread (from a timer
	 * or fd callback).  If 'pending_timeout' passes first the chain
	 * tempfails (451 4.7.1) and resume() returns -1.  Nothing else happens
	 * in that session meanwhile; other sessions go on. */
	unsigned long long (*suspend)(petrel_session *s);
	int (*resume)(petrel_conf *self, unsigned long long id, int verdict);

	/* Timers and fd watches on the event loop (callbacks on the loop).
	 * A timer fires once; cancel returns -1 if it already fired. */
	unsigned long long (*timer_add)(petrel_conf *self, unsigned long long ms,
	                                petrel_timer_fn *fn, void *arg);
	int (*timer_cancel)(petrel_conf *self, unsigned long long id);
	int (*fd_watch)(petrel_conf *self, int fd, int events, petrel_fd_fn *fn, void *arg); /* 0: unwatch */

	/* The message's top-level header section (headers, part, eom hooks).
	 * Index i from 0 to header_count()-1, in order.  name as written;
	 * value unfolded; decoded: RFC 2047 encoded-words as UTF-8. */
	int (*header_count)(petrel_txn *t);
	const char *(*header_name)(petrel_txn *t, int i);
	const char *(*header_value)(petrel_txn *t, int i);
	const char *(*header_decoded)(petrel_txn *t, int i);
	/* Changes, applied when the message is queued: add appends a header
	 * at the end of the header section (the top for prepend);
	 * change/remove act on the n-th (from 0) header of that name, or on
	 * all of them when n < 0.  Return 0, or -1 on a bad name or value. */
	int (*header_add)(petrel_txn *t, const char *name, const char *value, int prepend);
	int (*header_change)(petrel_txn *t, const char *name, int n, const char *value);
	int (*header_remove)(petrel_txn *t, const char *name, int n);

	/* Recipients: add routes a new recipient through the router (as if
	 * it were given at RCPT, without the stage's checks); remove drops an
	 * accepted one (address as given at RCPT; NULL: all of them).  A
	 * message left with no recipient is discarded.  Return 0 or -1. */
	int (*rcpt_add)(petrel_txn *t, const char *address);
	int (*rcpt_remove)(petrel_txn *t, const char *address);
	int (*rcpt_count)(petrel_txn *t);
	const char *(*rcpt_address)(petrel_txn *t, int i);

	/* MIME parts (part hook).  Strings are "" when absent. */
	int (*part_index)(petrel_part *p);          /* 0: the message itself */
	int (*part_depth)(petrel_part *p);
	int (*part_is_multipart)(petrel_part *p);
	const char *(*part_content_type)(petrel_part *p);  /* lower-case type/subtype */
	const char *(*part_filename)(petrel_part *p);      /* decoded, UTF-8 */
	const char *(*part_disposition)(petrel_part *p);   /* lower-case */
	unsigned (*part_flags)(petrel_part *p);            /* PETREL_MIME_* */
	/* The decoded body (base64/quoted-printable undone), valid until the
	 * hook returns. */
	const char *(*part_body)(petrel_part *p, size_t *len);

	/* Session facts. */
	const char *(*session_auth_user)(petrel_session *s);  /* NULL if not authenticated */
	const char *(*txn_client_helo)(petrel_txn *t);
	unsigned long long (*txn_size)(petrel_txn *t);      /* message bytes, at eom */
	const char *(*part_charset)(petrel_part *p);        /* lower-case, "" if none */
	/* api 1.0 ends here. */

	/* 1.1: run work(arg) on a thread of the daemon's filter pool
	 * (filter_workers), then done(arg) on the loop thread.  For blocking
	 * or slow work in a hook: suspend(), work_submit(), return
	 * PETREL_PENDING, and resume() from done().  work() may call only
	 * host->log; it must not touch the session or transaction, which may
	 * be gone by then (resume() then returns -1).  Jobs run in submission
	 * order per thread; the daemon finishes them before it exits.
	 * Returns 0, or -1 when work or done is NULL. */
	int (*work_submit)(petrel_conf *self, petrel_work_fn *work, petrel_work_fn *done, void *arg);
	/* api 1.1 ends here. */

	/* 1.2: deliveries with several recipients (transport start(), on the
	 * loop; a deliver() call sees exactly one, i = 0).  Index i from 0 to
	 * delivery_rcpt_count()-1.  orcpt: the DSN ORCPT as given
	 * ("rfc822;a@b.example", xtext undone) or ""; notify: PETREL_NOTIFY_*
	 * bits, 0 when the client gave no NOTIFY. */
	int (*delivery_rcpt_count)(petrel_delivery *d);
	const char *(*delivery_rcpt)(petrel_delivery *d, int i);
	const char *(*delivery_rcpt_orcpt)(petrel_delivery *d, int i);
	unsigned (*delivery_rcpt_notify)(petrel_delivery *d, int i);
	/* The result for recipient i: PETREL_DELIVERED, DEFER or BOUNCE, with
	 * the reply that decided it: the remote server's ("550 5.1.1 <a@b>:
	 * unknown user", its enhanced code first after the number when it
	 * gave one) or a local reason ("connect to mx.example[192.0.2.1]:25:
	 * Connection refused").  Once per recipient; later calls are ignored. */
	void (*delivery_rcpt_result)(petrel_delivery *d, int i, int result, const char *fmt, ...)
		PETREL_PRINTF(4, 5);
	/* Where the message went, for the log's relay= and a report's
	 * Remote-MTA: "mx.example.test[127.0.0.2]:25". */
	void (*delivery_relay)(petrel_delivery *d, const char *relay);
	/* The asynchronous delivery is over (see transport start()). */
	void (*delivery_done)(petrel_delivery *d);
	/* Read the message again from its first byte (a second MX, a retry
	 * on another connection).  Returns 0 or -1. */
	int (*delivery_rewind)(petrel_delivery *d);
	unsigned long long (*delivery_size)(petrel_delivery *d);  /* message bytes, as stored (CRLF) */
	unsigned (*delivery_flags)(petrel_delivery *d);           /* PETREL_DLV_* */
	const char *(*delivery_envid)(petrel_delivery *d);        /* DSN ENVID, xtext undone, or "" */
	/* The next hop the routes table or relayhost chose: "[host]:port" or
	 * "host:port" (brackets: no MX lookup; the port is always there, 25
	 * when the configuration gave none), or "" for the recipients'
	 * domain by MX (every recipient of the delivery then has the same
	 * domain).  Option: a key of the route that chose it, NULL when not
	 * set: "tls" (a route's tls = "none"|"may"|"encrypt"|"verify"; for
	 * relayhost, relayhost_tls "none" gives "none", "starttls" and
	 * "implicit" give "encrypt"), "tls_mode" ("implicit" when TLS starts
	 * at connect: relayhost_tls = "implicit", or a route's own
	 * tls_mode), "auth_user" and "auth_password" (relayhost_credentials,
	 * for the relayhost only).  Any other string key of a routes entry
	 * is passed through as written. */
	const char *(*delivery_nexthop)(petrel_delivery *d);
	const char *(*delivery_route_option)(petrel_delivery *d, const char *name);
	/* A top-level string setting of the daemon ("hostname", "resolver"),
	 * NULL when not set and without default.  Lives as long as the module. */
	const char *(*global_string)(const char *name);
	/* Does the daemon itself listen on this address and port (a next hop
	 * that loops back to us)?  addr is numeric ("127.0.0.1", "::1"). */
	int (*is_own_address)(const char *addr, int port);
	/* api 1.2 ends here; new functions are appended. */
};

/* True when the host offers function F (a member of struct petrel_host)
 * that was added in minor version MINOR. */
#define PETREL_HOST_HAS(host, MINOR) ((host)->api_minor >= (MINOR))

#endif
