/*
 * router.c - the "router": where each recipient goes.
 *
 * Local domains (the top-level 'domains'): aliases first, then mailboxes.
 * With a 'mailboxes' list only those addresses exist (550 5.1.1 for the
 * rest); without it every local part of a local domain is a mailbox.
 * Other domains go to the relay transport (the stage has already decided
 * whether this client may relay).  (<Postmaster> arrives here already
 * as postmaster@ the first local domain: the core rewrites it.)
 *
 * Aliases: "addr: dest, dest" strings; a destination may itself be an
 * alias, up to 10 levels; an alias that leads back to itself is a loop
 * and the message is refused (temporary failure, logged) rather than lost.
 */
#include <petrel/petrel.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ALIAS_DEPTH 10

struct alias {
	char *key;       /* lower-case local@domain */
	char **dests;
	int ndests;
};

struct router {
	const struct petrel_host *host;
	char **mailboxes;
	int nmailboxes;
	int have_mailboxes;
	struct alias *aliases;
	int naliases;
	const char *local_transport;
	const char *relay_transport;
};

static char *lower_dup(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (!p)
		return NULL;
	for (size_t i = 0; i < n; i++)
		p[i] = (char)tolower((unsigned char)s[i]);
	p[n] = 0;
	return p;
}

static char *trim_dup(const char *s, size_t n, int lower)
{
	while (n && isspace((unsigned char)*s))
		s++, n--;
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	if (lower)
		return lower_dup(s, n);
	char *p = malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

static int parse_alias(struct router *r, petrel_conf *conf, const char *line)
{
	const struct petrel_host *host = r->host;
	const char *colon = strchr(line, ':');
	if (!colon || colon == line) {
		host->conf_error(conf, "aliases", "'%s': expected \"address: destination, ...\"", line);
		return -1;
	}
	struct alias a = { .key = trim_dup(line, (size_t)(colon - line), 1) };
	const char *p = colon + 1;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		char *d = trim_dup(p, n, 0);
		if (d && *d) {
			a.dests = realloc(a.dests, (size_t)(a.ndests + 1) * sizeof *a.dests);
			a.dests[a.ndests++] = d;
		} else {
			free(d);
		}
		p += n + (comma ? 1 : 0);
	}
	if (!a.ndests || !a.key || !strchr(a.key, '@')) {
		host->conf_error(conf, "aliases", "'%s': needs an address with a domain and at least one destination", line);
		free(a.key);
		for (int i = 0; i < a.ndests; i++)
			free(a.dests[i]);
		free(a.dests);
		return -1;
	}
	r->aliases = realloc(r->aliases, (size_t)(r->naliases + 1) * sizeof *r->aliases);
	r->aliases[r->naliases++] = a;
	return 0;
}

static int router_init(const struct petrel_host *host, petrel_conf *conf, void **state)
{
	struct router *r = calloc(1, sizeof *r);
	if (!r)
		return -1;
	r->host = host;
	*state = r;
	r->local_transport = "maildir";
	r->relay_transport = "smtp";
	host->conf_string(conf, "local_transport", &r->local_transport);
	host->conf_string(conf, "relay_transport", &r->relay_transport);
	int n = host->conf_list_count(conf, "mailboxes");
	r->have_mailboxes = n > 0 || host->conf_list_count(conf, "mailboxes") > 0;
	for (int i = 0; i < n; i++) {
		const char *m = host->conf_list_string(conf, "mailboxes", i);
		if (!strchr(m, '@')) {
			host->conf_error(conf, "mailboxes", "'%s': a mailbox is local@domain", m);
			return -1;
		}
		r->mailboxes = realloc(r->mailboxes, (size_t)(r->nmailboxes + 1) * sizeof *r->mailboxes);
		r->mailboxes[r->nmailboxes++] = lower_dup(m, strlen(m));
	}
	n = host->conf_list_count(conf, "aliases");
	for (int i = 0; i < n; i++)
		if (parse_alias(r, conf, host->conf_list_string(conf, "aliases", i)) < 0)
			return -1;
	return 0;
}

static void router_fini(void *state)
{
	struct router *r = state;
	if (!r)
		return;
	for (int i = 0; i < r->nmailboxes; i++)
		free(r->mailboxes[i]);
	free(r->mailboxes);
	for (int i = 0; i < r->naliases; i++) {
		free(r->aliases[i].key);
		for (int k = 0; k < r->aliases[i].ndests; k++)
			free(r->aliases[i].dests[k]);
		free(r->aliases[i].dests);
	}
	free(r->aliases);
	free(r);
}

static const struct alias *find_alias(struct router *r, const char *addr)
{
	for (int i = 0; i < r->naliases; i++)
		if (!strcasecmp(r->aliases[i].key, addr))
			return &r->aliases[i];
	return NULL;
}

static int is_mailbox(struct router *r, const char *addr)
{
	if (!r->have_mailboxes)
		return 1;
	for (int i = 0; i < r->nmailboxes; i++)
		if (!strcasecmp(r->mailboxes[i], addr))
			return 1;
	return 0;
}

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : "";
}

/* Route one address; chain[] holds the aliases being expanded (loops). */
static int route_addr(struct router *r, petrel_route *rt, const char *addr,
                      const char **chain, int depth)
{
	const struct petrel_host *host = r->host;
	const char *domain = domain_of(addr);
	if (!host->route_local_domain(rt, domain))
		return host->route_add(rt, r->relay_transport, addr) < 0 ? PETREL_ROUTE_TEMPFAIL
		                                                          : PETREL_ROUTE_OK;
	const struct alias *a = find_alias(r, addr);
	if (a) {
		for (int i = 0; i < depth; i++)
			if (!strcasecmp(chain[i], a->key)) {
				host->log(PETREL_LOG_WARN, "alias loop: %s leads back to itself", a->key);
				return PETREL_ROUTE_TEMPFAIL;
			}
		if (depth >= ALIAS_DEPTH) {
			host->log(PETREL_LOG_WARN, "alias %s: nesting deeper than %d", a->key, ALIAS_DEPTH);
			return PETREL_ROUTE_TEMPFAIL;
		}
		chain[depth] = a->key;
		for (int i = 0; i < a->ndests; i++) {
			int v = route_addr(r, rt, a->dests[i], chain, depth + 1);
			if (v != PETREL_ROUTE_OK)
				return v == PETREL_ROUTE_UNKNOWN ? PETREL_ROUTE_TEMPFAIL : v;
		}
		return PETREL_ROUTE_OK;
	}
	if (!is_mailbox(r, addr))
		return PETREL_ROUTE_UNKNOWN;
	return host->route_add(rt, r->local_transport, addr) < 0 ? PETREL_ROUTE_TEMPFAIL
	                                                          : PETREL_ROUTE_OK;
}

static int router_route(void *state, petrel_route *rt, petrel_addr *rcpt)
{
	struct router *r = state;
	const char *chain[ALIAS_DEPTH + 1];
	return route_addr(r, rt, r->host->addr_string(rcpt), chain, 0);
}

static const struct petrel_setting router_settings[] = {
	{ .name = "mailboxes", .type = PETREL_SET_STRING_LIST,
	  .help = "the existing mailboxes (local@domain), others get 550 5.1.1; without it every "
	          "local part exists and gets a maildir (the embedded default lists its own)" },
	{ .name = "aliases", .type = PETREL_SET_STRING_LIST,
	  .help = "\"address: destination, destination\" entries" },
	{ .name = "local_transport", .type = PETREL_SET_STRING,
	  .help = "transport for local mailboxes (default maildir)" },
	{ .name = "relay_transport", .type = PETREL_SET_STRING,
	  .help = "transport for other domains (default smtp)" },
	{ .type = PETREL_SET_END },
};

static const struct petrel_router_ops router_ops = { .route = router_route };

PETREL_MODULE(
	.name = "router",
	.version = "1.0",
	.summary = "local domains, mailboxes table, aliases; everything else to the relay transport",
	.settings = router_settings,
	.init = router_init,
	.fini = router_fini,
	.router = &router_ops,
);
