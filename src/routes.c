/*
 * routes.c - the routes table matcher and nexthop syntax (see routes.h).
 */
#include "routes.h"
#include "mem.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool route_domain_matches(const char *pattern, const char *domain)
{
	if (!strcmp(pattern, "*"))
		return true;
	if (pattern[0] == '.') {
		size_t pl = strlen(pattern), dl = strlen(domain);
		/* below it only: "a.sub.example", never "sub.example" itself */
		return dl > pl && !strcasecmp(domain + dl - pl, pattern);
	}
	return !strcasecmp(pattern, domain);
}

const struct route *routes_match(const struct route *v, int n, const char *domain)
{
	for (int i = 0; i < n; i++)
		if (route_domain_matches(v[i].domain, domain))
			return &v[i];
	return NULL;
}

const char *route_option(const struct route *r, const char *name)
{
	for (int i = 0; r && i < r->nopts; i++)
		if (!strcmp(r->opts[i].name, name))
			return r->opts[i].value;
	return NULL;
}

static bool host_ok(const char *h, size_t n, bool bracketed)
{
	if (!n || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		if (isalnum(c) || c == '-' || c == '.' || c == '_')
			continue;
		if (bracketed && c == ':')      /* an IPv6 literal */
			continue;
		return false;
	}
	return true;
}

int routes_nexthop_normalise(const char *in, char **out, const char **why)
{
	const char *host = in, *rest;
	size_t hl;
	bool br = in[0] == '[';
	if (br) {
		const char *rb = strchr(in, ']');
		if (!rb) {
			*why = "a '[' without its ']'";
			return -1;
		}
		host = in + 1;
		hl = (size_t)(rb - host);
		rest = rb + 1;
	} else {
		const char *colon = strchr(in, ':');
		hl = colon ? (size_t)(colon - in) : strlen(in);
		rest = in + hl;
	}
	if (!host_ok(host, hl, br)) {
		*why = br ? "bad host or address between the brackets"
		          : "bad host name (an IPv6 address goes in brackets: [::1]:25)";
		return -1;
	}
	long port = 25;
	if (*rest == ':') {
		char *end;
		port = strtol(rest + 1, &end, 10);
		if (end == rest + 1 || *end || port < 1 || port > 65535) {
			*why = "bad port (1-65535)";
			return -1;
		}
	} else if (*rest) {
		*why = "expected [host]:port or host:port";
		return -1;
	}
	*out = xasprintf("%s%.*s%s:%ld", br ? "[" : "", (int)hl, host, br ? "]" : "", port);
	for (char *p = *out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}
