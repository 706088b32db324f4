/*
 * metrics_http.h - the request parser of the metrics endpoint: a pure
 * function over the bytes received so far, so it can be tested by table
 * and fed hostile input without a socket.
 *
 * Invariants: only "GET /metrics" (optionally with a query string) over
 * HTTP/1.0 or 1.1 is served; the whole head must fit METRICS_HTTP_MAX
 * bytes (larger is an error, never a growing buffer); the parser never
 * reads past LEN and keeps no state between calls (the caller re-parses
 * the buffer as bytes arrive: at most METRICS_HTTP_MAX bytes each time).
 */
#ifndef PETREL_METRICS_HTTP_H
#define PETREL_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define METRICS_HTTP_MAX 4096

enum metrics_http_result {
	METRICS_HTTP_INCOMPLETE = 0,  /* need more bytes */
	METRICS_HTTP_OK,              /* 200: serve the metrics */
	METRICS_HTTP_BAD_REQUEST,     /* 400 */
	METRICS_HTTP_NOT_FOUND,       /* 404: a path other than /metrics */
	METRICS_HTTP_BAD_METHOD,      /* 405: a method other than GET */
	METRICS_HTTP_TOO_LARGE,       /* 431: the head does not fit */
};

struct metrics_http_request {
	bool openmetrics;             /* Accept asks for application/openmetrics-text */
};

enum metrics_http_result metrics_http_parse(const char *buf, size_t len, struct metrics_http_request *req);

/* The status line text of a result ("400 Bad Request"); NULL for INCOMPLETE. */
const char *metrics_http_status(enum metrics_http_result r);

#endif
