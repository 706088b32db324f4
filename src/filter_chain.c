/*
 * filter_chain.c - the hook chain, its suspension and resumption (see
 * filter_chain.h).
 *
 * The message step walks three phases over the chain: every module's
 * headers hook, then for each MIME part every module's part hook, then
 * every module's eom hook.  DISCARD and HOLD mark the transaction and end
 * the message step; in earlier steps they mark it and the step goes on.
 */
#include "filter_chain.h"
#include "log.h"
#include "server.h"
#include "generation.h"
#include "msg_edit.h"

#include <string.h>

static int chain_len(struct petrel_session *s)
{
	return 1 + s->l->nfilters;
}

static struct module *chain_mod(struct petrel_session *s, int i, const struct petrel_hooks **h)
{
	struct module *m = i == 0 ? s->l->stage : s->l->filters[i - 1];
	*h = !m ? NULL : i == 0 ? m->desc->stage : m->desc->filter;
	return m;
}

bool chain_wants_message(struct petrel_session *s)
{
	for (int i = 0; i < chain_len(s); i++) {
		const struct petrel_hooks *h;
		chain_mod(s, i, &h);
		if (h && (h->headers || h->part || h->eom))
			return true;
	}
	return false;
}

/* Call module i's hook for the current step; -1 when it has none. */
static int call_hook(struct petrel_session *s, int i)
{
	const struct petrel_hooks *h;
	struct module *m = chain_mod(s, i, &h);
	struct petrel_txn *t = s->txn;
	struct chain_run *r = &s->run;
	if (!h)
		return -1;
	switch (r->step) {
	case STEP_CONNECT: return h->connect ? h->connect(m->state, s) : -1;
	case STEP_HELO: return h->helo ? h->helo(m->state, s, s->helo) : -1;
	case STEP_AUTH:
		return h->auth ? h->auth(m->state, s, s->auth_try_user, s->auth_try_ok) : -1;
	case STEP_MAIL: return h->mail ? h->mail(m->state, t, &t->sender) : -1;
	case STEP_RCPT: return h->rcpt ? h->rcpt(m->state, t, &t->cur_rcpt) : -1;
	case STEP_MESSAGE:
		if (r->phase == 0)
			return h->headers ? h->headers(m->state, t) : -1;
		if (r->phase <= msg_nparts(t))
			return h->part ? h->part(m->state, t, msg_part(t, r->phase - 1)) : -1;
		return h->eom ? h->eom(m->state, t) : -1;
	}
	return -1;
}

static void pending_timeout(struct ev_loop *loop, void *arg)
{
	(void)loop;
	struct petrel_session *s = arg;
	log_warn("%s: filter hook pending for more than %d s: temporary failure",
	         s->txn ? s->txn->qid : s->peer_name, s->gen->cfg->pending_timeout);
	s->run.pending_id = 0;
	s->pending = false;
	static const char timed_out[] = "451 4.7.1 Error: filter timed out, try again later";
	if (s->txn)
		snprintf(s->txn->reply, sizeof s->txn->reply, "%s", timed_out);
	else
		snprintf(s->reply, sizeof s->reply, "%s", timed_out);
	step_done(s, s->run.step, PETREL_TEMPFAIL);
}

/* DISCARD/HOLD: for the transaction, or before MAIL for every message of
 * the session. */
static void mark(struct petrel_session *s, int v)
{
	if (s->txn) {
		if (v == PETREL_DISCARD)
			s->txn->discard = true;
		else
			s->txn->hold = true;
	} else if (v == PETREL_DISCARD) {
		s->discard_all = true;
	} else {
		s->hold_all = true;
	}
}

/* Run from r->mod on; returns when decided (step_done called) or pending. */
static void chain_run(struct petrel_session *s)
{
	struct chain_run *r = &s->run;
	int n = chain_len(s);
	int phases = r->step == STEP_MESSAGE ? msg_nparts(s->txn) + 2 : 1;
	for (; r->phase < phases; r->phase++, r->mod = 0) {
		if (r->step == STEP_MESSAGE && r->phase >= 2 && r->mod == 0)
			msg_part_release(s->txn, r->phase - 2);   /* every hook has seen it */
		for (; r->mod < n; r->mod++) {
			int v = call_hook(s, r->mod);
			if (v < 0 || v == PETREL_CONTINUE)
				continue;
			if (v == PETREL_PENDING) {
				if (!r->pending_id) {
					log_error("%s: module returned PETREL_PENDING without suspend(): tempfail",
					          s->peer_name);
					step_done(s, r->step, PETREL_TEMPFAIL);
					return;
				}
				s->pending = true;
				ev_timer_start(s->srv->loop, &r->timer,
				               (uint64_t)s->gen->cfg->pending_timeout * 1000);
				return;
			}
			if (v == PETREL_ACCEPT)
				break;
			if (v == PETREL_DISCARD || v == PETREL_HOLD) {
				mark(s, v);
				if (r->step == STEP_MESSAGE) {
					step_done(s, r->step, PETREL_CONTINUE);
					return;
				}
				continue;
			}
			if (v == PETREL_REJECT || v == PETREL_TEMPFAIL) {
				step_done(s, r->step, v);
				return;
			}
			log_warn("%s: module returned unknown verdict %d: ignored", s->peer_name, v);
		}
	}
	step_done(s, r->step, PETREL_CONTINUE);
}

void chain_start(struct petrel_session *s, enum chain_step step)
{
	struct chain_run *r = &s->run;
	if (!r->timer.cb)
		ev_timer_init(&r->timer, pending_timeout, s);
	r->step = step;
	r->mod = 0;
	r->phase = 0;
	r->pending_id = 0;
	chain_run(s);
}

unsigned long long chain_suspend(struct petrel_session *s)
{
	s->run.pending_id = ++s->srv->pending_counter;
	return s->run.pending_id;
}

int chain_resume(struct server *srv, unsigned long long id, int verdict)
{
	struct petrel_session *s;
	for (s = srv->sessions; s; s = s->next)
		if (s->pending && s->run.pending_id == id)
			break;
	if (!s || !id)
		return -1;
	ev_timer_stop(srv->loop, &s->run.timer);
	s->pending = false;
	s->run.pending_id = 0;
	if (s->fd < 0) {          /* the client left meanwhile */
		step_done(s, s->run.step, PETREL_TEMPFAIL);
		return 0;
	}
	switch (verdict) {
	case PETREL_CONTINUE:
		s->run.mod++;
		chain_run(s);
		break;
	case PETREL_ACCEPT:
		s->run.mod = chain_len(s);
		chain_run(s);
		break;
	case PETREL_DISCARD:
	case PETREL_HOLD:
		mark(s, verdict);
		if (s->run.step == STEP_MESSAGE) {
			step_done(s, s->run.step, PETREL_CONTINUE);
		} else {
			s->run.mod++;
			chain_run(s);
		}
		break;
	case PETREL_REJECT:
	case PETREL_TEMPFAIL:
		step_done(s, s->run.step, verdict);
		break;
	default:
		log_warn("%s: resume with verdict %d: temporary failure", s->peer_name, verdict);
		step_done(s, s->run.step, PETREL_TEMPFAIL);
		break;
	}
	return 0;
}

void chain_queued(struct petrel_session *s, struct petrel_txn *t)
{
	for (int i = 0; i < chain_len(s); i++) {
		const struct petrel_hooks *h;
		struct module *m = chain_mod(s, i, &h);
		if (h && h->queued)
			h->queued(m->state, t);
	}
}

void chain_txn_end(struct petrel_session *s, struct petrel_txn *t)
{
	for (int i = 0; i < chain_len(s); i++) {
		const struct petrel_hooks *h;
		struct module *m = chain_mod(s, i, &h);
		if (h && h->txn_end)
			h->txn_end(m->state, t);
	}
}

void chain_session_end(struct petrel_session *s)
{
	for (int i = 0; i < chain_len(s); i++) {
		const struct petrel_hooks *h;
		struct module *m = chain_mod(s, i, &h);
		if (h && h->session_end)
			h->session_end(m->state, s);
	}
}
