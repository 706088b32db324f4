/*
 * metrics_http.c - parse an HTTP request head for the metrics endpoint
 * (see metrics_http.h).  Linear in the bytes given, bounded by
 * METRICS_HTTP_MAX; any byte that is not printable ASCII, tab or CR LF in
 * the head is a 400.
 */
#include "metrics_http.h"

#include <string.h>
#include <strings.h>

const char *metrics_http_status(enum metrics_http_result r)
{
	switch (r) {
	case METRICS_HTTP_OK: return "200 OK";
	case METRICS_HTTP_BAD_REQUEST: return "400 Bad Request";
	case METRICS_HTTP_NOT_FOUND: return "404 Not Found";
	case METRICS_HTTP_BAD_METHOD: return "405 Method Not Allowed";
	case METRICS_HTTP_TOO_LARGE: return "431 Request Header Fields Too Large";
	case METRICS_HTTP_INCOMPLETE: break;
	}
	return NULL;
}

/* Does [p, e) contain NEEDLE, case-insensitively? */
static bool contains_ci(const char *p, const char *e, const char *needle)
{
	size_t n = strlen(needle);
	for (; (size_t)(e - p) >= n; p++)
		if (strncasecmp(p, needle, n) == 0)
			return true;
	return false;
}

enum metrics_http_result metrics_http_parse(const char *buf, size_t len, struct metrics_http_request *req)
{
	req->openmetrics = false;
	size_t scan = len < METRICS_HTTP_MAX ? len : METRICS_HTTP_MAX;
	/* find the end of the head: an empty line (CRLF CRLF, or LF LF) */
	size_t end = 0;
	for (size_t i = 0; i < scan; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c != '\r' && c != '\n' && c != '\t' && (c < 0x20 || c > 0x7e))
			return METRICS_HTTP_BAD_REQUEST;
		if (c == '\n' && ((i >= 1 && buf[i - 1] == '\n') || (i >= 3 && memcmp(buf + i - 3, "\r\n\r\n", 4) == 0))) {
			end = i + 1;
			break;
		}
	}
	if (!end)
		return len >= METRICS_HTTP_MAX ? METRICS_HTTP_TOO_LARGE : METRICS_HTTP_INCOMPLETE;

	const char *p = buf, *e = buf + end;
	const char *eol = memchr(p, '\n', (size_t)(e - p));
	const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
	if (!sp1 || sp1 == p)
		return METRICS_HTTP_BAD_REQUEST;
	const char *target = sp1 + 1;
	const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
	if (!sp2 || sp2 == target)
		return METRICS_HTTP_BAD_REQUEST;
	const char *ver = sp2 + 1;
	size_t vlen = (size_t)(eol - ver);
	if (vlen && ver[vlen - 1] == '\r')
		vlen--;
	if (!(vlen == 8 && (memcmp(ver, "HTTP/1.1", 8) == 0 || memcmp(ver, "HTTP/1.0", 8) == 0)))
		return METRICS_HTTP_BAD_REQUEST;
	size_t mlen = (size_t)(sp1 - p);
	for (size_t i = 0; i < mlen; i++)
		if (p[i] < 'A' || p[i] > 'Z')
			return METRICS_HTTP_BAD_REQUEST;
	size_t tlen = (size_t)(sp2 - target);
	bool path_ok = (tlen == 8 && memcmp(target, "/metrics", 8) == 0) ||
	               (tlen > 8 && memcmp(target, "/metrics?", 9) == 0);
	if (!(mlen == 3 && memcmp(p, "GET", 3) == 0))
		return path_ok ? METRICS_HTTP_BAD_METHOD : METRICS_HTTP_NOT_FOUND;
	if (!path_ok)
		return METRICS_HTTP_NOT_FOUND;

	/* headers: only Accept matters; each line must be NAME: value */
	for (const char *l = eol + 1; l < e;) {
		const char *nl = memchr(l, '\n', (size_t)(e - l));
		const char *le = nl > l && nl[-1] == '\r' ? nl - 1 : nl;
		if (le == l)
			break;   /* the empty line */
		const char *colon = memchr(l, ':', (size_t)(le - l));
		if (!colon || colon == l)
			return METRICS_HTTP_BAD_REQUEST;
		for (const char *q = l; q < colon; q++)
			if (*q == ' ' || *q == '\t')
				return METRICS_HTTP_BAD_REQUEST;
		if ((size_t)(colon - l) == 6 && strncasecmp(l, "accept", 6) == 0 &&
		    contains_ci(colon + 1, le, "application/openmetrics-text"))
			req->openmetrics = true;
		l = nl + 1;
	}
	return METRICS_HTTP_OK;
}
