/*
 * filter_chain.h - running the hook chain of a session: the listener's
 * stage module, then its filters (the listener's own list, else the
 * global one), in configuration order.
 *
 * A step (connect, helo, auth, mail, rcpt, message) runs the hooks in order
 * until one decides.  A hook may suspend (PETREL_PENDING): the session
 * stops reading, other sessions go on, and the step continues from the
 * next module when the module calls host->resume(), or tempfails when
 * pending_timeout passes.  When the step is decided, step_done() (in
 * smtp_server.c / smtp_data.c) carries on with the command.
 */
#ifndef PETREL_FILTER_CHAIN_H
#define PETREL_FILTER_CHAIN_H

#include "session.h"

enum chain_step { STEP_CONNECT, STEP_HELO, STEP_AUTH, STEP_MAIL, STEP_RCPT, STEP_MESSAGE };

/* Start a step; step_done() is called, now or after a resume. */
void chain_start(struct petrel_session *s, enum chain_step step);
/* Called when the step is decided (verdict: CONTINUE/ACCEPT mean go on). */
void step_done(struct petrel_session *s, enum chain_step step, int verdict);

/* Does any module of the session's chain have message hooks? */
bool chain_wants_message(struct petrel_session *s);
void chain_queued(struct petrel_session *s, struct petrel_txn *t);
void chain_txn_end(struct petrel_session *s, struct petrel_txn *t);
void chain_session_end(struct petrel_session *s);

/* host functions */
unsigned long long chain_suspend(struct petrel_session *s);
int chain_resume(struct server *srv, unsigned long long id, int verdict);

#endif
