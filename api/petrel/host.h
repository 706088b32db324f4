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
	/* api 1.0 ends here; new functions are appended. */
};

/* True when the host offers function F (a member of struct petrel_host)
 * that was added in minor version MINOR. */
#define PETREL_HOST_HAS(host, MINOR) ((host)->api_minor >= (MINOR))

#endif
