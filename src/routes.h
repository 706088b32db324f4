/*
 * routes.h - where mail for a non-local domain goes: the routes table and
 * the relayhost (smarthost) of petrel.conf.
 *
 * A route is { domain; transport; nexthop; tls; ... }.  domain is an exact
 * name ("partner.test"), ".sub.example" for the names below sub.example
 * (not sub.example itself), or "*" for every domain; the first route that
 * matches wins.  A nexthop is Postfix's: "[host]:port" (brackets: no MX
 * lookup) or "host:port" (MX of host); without a port it means 25, and
 * the stored form always has one.  "" is the recipient's domain by MX.
 *
 * Local domains never consult the table: they keep the router's transport.
 * A non-local domain that no route matches goes to the relayhost when one
 * is set, else by MX.
 *
 * Pure functions over a table the configuration owns (config.c builds it
 * and frees it); nothing here allocates except routes_nexthop_normalise.
 */
#ifndef PETREL_ROUTES_H
#define PETREL_ROUTES_H

#include <stdbool.h>

struct route_opt {
	char *name;
	char *value;
};

struct route {
	char *domain;            /* lower case: "a.example", ".sub.example", "*" */
	char *transport;         /* NULL: the router's choice */
	char *nexthop;           /* normalised, "" for MX */
	struct route_opt *opts;  /* the other keys ("tls", ...), as written */
	int nopts;
};

/* The first route whose domain matches 'domain' (lower case), or NULL. */
const struct route *routes_match(const struct route *v, int n, const char *domain);
/* Does one route's domain pattern match? */
bool route_domain_matches(const char *pattern, const char *domain);
/* The value of option 'name' of r, or NULL. */
const char *route_option(const struct route *r, const char *name);

/* Check and normalise a nexthop ("[h]" -> "[h]:25", "h" -> "h:25").
 * Returns 0 with *out (caller frees), or -1 with *why. */
int routes_nexthop_normalise(const char *in, char **out, const char **why)
	__attribute__((warn_unused_result));

#endif
