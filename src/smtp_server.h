/*
 * smtp_server.h - what the two halves of the SMTP session share:
 * smtp_server.c (connection, TLS, commands, replies), smtp_data.c (message
 * transfer, the end-of-data checks and the commit) and smtp_auth.c (AUTH).
 * Core-only.
 */
#ifndef PETREL_SMTP_SERVER_H
#define PETREL_SMTP_SERVER_H

#include "session.h"
#include "server.h"

void session_reply(struct petrel_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Send what can be sent; false when the session is gone (freed). */
bool session_flush(struct petrel_session *s);
void session_process(struct petrel_session *s);   /* run buffered input */
void txn_free(struct petrel_session *s);           /* end the transaction */
void addr_clear(struct petrel_addr *a);            /* free its strings, zero it */
void session_set_timer(struct petrel_session *s);
/* A message was accepted (250 at its end): the error and junk counts
 * start again from zero, as Postfix's do "without delivering mail". */
void session_mail_delivered(struct petrel_session *s);

/* smtp_data.c */
/* Open the queue slot and write the envelope; -1 with the reply to give. */
int data_begin(struct petrel_session *s, const char **reply) __attribute__((warn_unused_result));
const char *storage_reply(int errnum);     /* 452 4.3.1 for a full disk, else 451 4.3.0 */
/* Consume message bytes from s->in; returns 1 when the message ended. */
int data_consume(struct petrel_session *s);
/* Consume up to s->bdat_left bytes; returns 1 when the chunk ended. */
int bdat_consume(struct petrel_session *s);
void data_end(struct petrel_session *s);           /* checks, hooks, commit */

/* smtp_auth.c */
bool auth_offered(const struct petrel_session *s);   /* AUTH in EHLO? */
void do_auth(struct petrel_session *s, const char *arg);
/* A line answering a 334 while s->sasl is set. */
void auth_response(struct petrel_session *s, const char *line, size_t len);
void auth_done(struct petrel_session *s, int verdict);   /* the auth hooks decided */
void auth_abort(struct petrel_session *s);        /* end a 334 dialog, if any */
void auth_session_end(struct petrel_session *s);  /* the session ends: drop AUTH state */

/* The message step is decided (smtp_data.c). */
void message_done(struct petrel_session *s, int verdict);
/* Route a recipient into t's envelope; a petrel_route_result. */
int session_route(struct petrel_session *s, struct petrel_txn *t, struct petrel_addr *a);

#endif
