/*
 * test-routes.c - table-driven tests for src/routes.c: the routes table
 * matcher (exact domain, ".sub.example" for the names below it only, "*",
 * first match wins) and the nexthop syntax (Postfix's "[host]:port";
 * without a port it is 25).
 */
#include "routes.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

static struct route table[] = {
	{ .domain = "partner.test", .nexthop = "[10.0.0.1]:2525" },
	{ .domain = ".sub.example", .nexthop = "" },
	{ .domain = "a.sub.example", .nexthop = "never-reached:25" },   /* shadowed by the one above */
	{ .domain = "sub.example", .nexthop = "sub:25" },
	{ .domain = "*", .nexthop = "" },
};

struct match_case {
	const char *label;
	const char *domain;
	int want;               /* index in table[], -1: none */
	int nroutes;            /* 0: the whole table */
};

static const struct match_case match_cases[] = {
	{ .label = "exact", .domain = "partner.test", .want = 0 },
	{ .label = "exact is case-insensitive", .domain = "Partner.TEST", .want = 0 },
	{ .label = "exact does not match a subdomain (falls to *)", .domain = "x.partner.test", .want = 4 },
	{ .label = "exact does not match a suffix (falls to *)", .domain = "xpartner.test", .want = 4 },
	{ .label = ".sub matches one level below", .domain = "a.sub.example", .want = 1 },
	{ .label = ".sub matches two levels below", .domain = "b.a.sub.example", .want = 1 },
	{ .label = ".sub does not match the name itself", .domain = "sub.example", .want = 3 },
	{ .label = ".sub does not match a look-alike", .domain = "notsub.example", .want = 4 },
	{ .label = "first match wins over a later exact", .domain = "a.sub.example", .want = 1 },
	{ .label = "* matches the rest", .domain = "elsewhere.test", .want = 4 },
	{ .label = "no * : no match", .domain = "elsewhere.test", .want = -1, .nroutes = 4 },
	{ .label = "empty table", .domain = "partner.test", .want = -1, .nroutes = -1 },
};

struct nexthop_case {
	const char *label;
	const char *in;
	const char *want;       /* NULL: refused */
};

static const struct nexthop_case nexthop_cases[] = {
	{ .label = "bracketed with port", .in = "[10.0.0.1]:2525", .want = "[10.0.0.1]:2525" },
	{ .label = "bracketed without port means 25", .in = "[smtp.provider.test]", .want = "[smtp.provider.test]:25" },
	{ .label = "host without port means 25", .in = "mx.example", .want = "mx.example:25" },
	{ .label = "host with port", .in = "mx.example:587", .want = "mx.example:587" },
	{ .label = "lower-cased", .in = "[SMTP.Provider.TEST]:587", .want = "[smtp.provider.test]:587" },
	{ .label = "IPv6 literal", .in = "[::1]:2525", .want = "[::1]:2525" },
	{ .label = "bare IPv6 refused", .in = "::1", .want = NULL },
	{ .label = "port 0 refused", .in = "[h]:0", .want = NULL },
	{ .label = "port 65536 refused", .in = "h:65536", .want = NULL },
	{ .label = "empty port refused", .in = "h:", .want = NULL },
	{ .label = "missing ]", .in = "[h:25", .want = NULL },
	{ .label = "garbage after ]", .in = "[h]x", .want = NULL },
	{ .label = "empty refused", .in = "", .want = NULL },
	{ .label = "space refused", .in = "a b:25", .want = NULL },
};

int main(void)
{
	for (size_t i = 0; i < N(match_cases); i++) {
		const struct match_case *c = &match_cases[i];
		int n = c->nroutes == 0 ? (int)N(table) : c->nroutes < 0 ? 0 : c->nroutes;
		const struct route *r = routes_match(table, n, c->domain);
		int got = r ? (int)(r - table) : -1;
		tap_ok(got == c->want, "match: %s (%s: got %d, want %d)", c->label, c->domain, got, c->want);
	}
	for (size_t i = 0; i < N(nexthop_cases); i++) {
		const struct nexthop_case *c = &nexthop_cases[i];
		char *out = NULL;
		const char *why = NULL;
		int r = routes_nexthop_normalise(c->in, &out, &why);
		if (c->want)
			tap_ok(r == 0 && !strcmp(out, c->want), "nexthop: %s ('%s' -> '%s', want '%s')",
			       c->label, c->in, r == 0 ? out : why, c->want);
		else
			tap_ok(r == -1 && why && *why, "nexthop: %s ('%s' refused: %s)", c->label, c->in,
			       r == -1 ? why : out);
		free(out);
	}
	struct route_opt opts[] = { { .name = "tls", .value = "verify" } };
	struct route r = { .domain = "*", .opts = opts, .nopts = 1 };
	tap_ok(route_option(&r, "tls") && !strcmp(route_option(&r, "tls"), "verify"), "option tls");
	tap_ok(route_option(&r, "auth_user") == NULL, "option not set is NULL");
	tap_ok(route_option(NULL, "tls") == NULL, "no route: NULL");
	return tap_done();
}
