/*
 * test-metrics-http.c - the metrics endpoint's request parser, by table:
 * the one request served, each refusal (400/404/405/431), incomplete heads,
 * hostile bytes, and an oversized head that must be refused without the
 * parser reading past the bound.
 */
#include "metrics_http.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static const struct {
	const char *in;
	enum metrics_http_result want;
	bool om;
} cases[] = {
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", METRICS_HTTP_OK, false },
	{ "GET /metrics HTTP/1.0\r\n\r\n", METRICS_HTTP_OK, false },
	{ "GET /metrics HTTP/1.1\n\n", METRICS_HTTP_OK, false },
	{ "GET /metrics?x=1 HTTP/1.1\r\n\r\n", METRICS_HTTP_OK, false },
	{ "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5\r\n\r\n",
	  METRICS_HTTP_OK, true },
	{ "GET /metrics HTTP/1.1\r\naccept: text/plain\r\n\r\n", METRICS_HTTP_OK, false },
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n", METRICS_HTTP_INCOMPLETE, false },
	{ "GET /metr", METRICS_HTTP_INCOMPLETE, false },
	{ "", METRICS_HTTP_INCOMPLETE, false },
	{ "POST /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_BAD_METHOD, false },
	{ "HEAD /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_BAD_METHOD, false },
	{ "GET / HTTP/1.1\r\n\r\n", METRICS_HTTP_NOT_FOUND, false },
	{ "GET /metricsx HTTP/1.1\r\n\r\n", METRICS_HTTP_NOT_FOUND, false },
	{ "GET /../metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_NOT_FOUND, false },
	{ "POST /x HTTP/1.1\r\n\r\n", METRICS_HTTP_NOT_FOUND, false },
	{ "GET /metrics\r\n\r\n", METRICS_HTTP_BAD_REQUEST, false },
	{ "GET /metrics HTTP/2.0\r\n\r\n", METRICS_HTTP_BAD_REQUEST, false },
	{ "GET  /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_BAD_REQUEST, false },
	{ "get /metrics HTTP/1.1\r\n\r\n", METRICS_HTTP_BAD_REQUEST, false },
	{ "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", METRICS_HTTP_BAD_REQUEST, false },
	{ "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n", METRICS_HTTP_BAD_REQUEST, false },
	{ "GET /metrics HTTP/1.1\r\n: x\r\n\r\n", METRICS_HTTP_BAD_REQUEST, false },
	{ "EHLO example.com\r\n", METRICS_HTTP_INCOMPLETE, false },
	{ "\x16\x03\x01\x02\x00", METRICS_HTTP_BAD_REQUEST, false },
	{ "GET /metrics HTTP/1.1\r\nX: \x80\r\n\r\n", METRICS_HTTP_BAD_REQUEST, false },
};

int main(void)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct metrics_http_request r;
		enum metrics_http_result got = metrics_http_parse(cases[i].in, strlen(cases[i].in), &r);
		tap_ok(got == cases[i].want && (got != METRICS_HTTP_OK || r.openmetrics == cases[i].om),
		       "case %zu: got %d want %d", i, (int)got, (int)cases[i].want);
	}
	/* a NUL byte is not printable */
	struct metrics_http_request r;
	tap_ok(metrics_http_parse("GET /\0metrics", 13, &r) == METRICS_HTTP_BAD_REQUEST, "NUL is a 400");

	/* an endless header: refused at the bound, whatever follows */
	size_t n = METRICS_HTTP_MAX * 4;
	char *big = malloc(n);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX-A: ", 28);
	memset(big + 28, 'a', n - 28);
	tap_ok(metrics_http_parse(big, METRICS_HTTP_MAX - 1, &r) == METRICS_HTTP_INCOMPLETE, "under the bound: incomplete");
	tap_ok(metrics_http_parse(big, METRICS_HTTP_MAX, &r) == METRICS_HTTP_TOO_LARGE, "at the bound: 431");
	tap_ok(metrics_http_parse(big, n, &r) == METRICS_HTTP_TOO_LARGE, "past the bound: 431");
	free(big);
	tap_ok(strcmp(metrics_http_status(METRICS_HTTP_NOT_FOUND), "404 Not Found") == 0, "status text");
	tap_ok(metrics_http_status(METRICS_HTTP_INCOMPLETE) == NULL, "no status for incomplete");
	return tap_done();
}
