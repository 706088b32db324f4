/*
 * mta.c - the "mta" stage: inbound mail from other MTAs (port 25).
 *
 * Accepts a recipient only when its domain is local, or when the client
 * may relay: it is in relay_networks, or the session authenticated (AUTH).  Never an open relay: a local domain with a local
 * part that routes elsewhere under old conventions (user%other@local,
 * "user@other"@local, other!user@local) is refused for clients that may
 * not relay, and a source route is dropped by the parser so
 * <@local:user@other> is judged as user@other.
 */
#include <petrel/petrel.h>
#include <string.h>

static const struct petrel_host *host;

static int mta_init(const struct petrel_host *h, petrel_conf *conf, void **state)
{
	(void)conf;
	(void)state;
	host = h;
	return 0;
}

static int mta_rcpt(void *state, petrel_txn *t, petrel_addr *rcpt)
{
	(void)state;
	petrel_session *s = host->txn_session(t);
	const char *domain = host->addr_domain(rcpt);
	const char *local = host->addr_local(rcpt);
	/* who may relay: relay_networks, and a session that logged in */
	if (host->session_may_relay(s) || host->session_auth_user(s))
		return PETREL_CONTINUE;
	if (!*domain) /* <Postmaster>: always ours (RFC 5321 4.5.1) */
		return PETREL_CONTINUE;
	if (!host->is_local_domain(s, domain) || strpbrk(local, "%!@")) {
		host->txn_reply(t, "554 5.7.1 <%s>: Relay access denied", host->addr_string(rcpt));
		return PETREL_REJECT;
	}
	return PETREL_CONTINUE;
}

static const struct petrel_hooks mta_hooks = {
	.rcpt = mta_rcpt,
};

PETREL_MODULE(
	.name = "mta",
	.version = "1.0",
	.summary = "inbound MX stage: local domains only, relay for relay_networks and AUTH",
	.init = mta_init,
	.stage = &mta_hooks,
);
