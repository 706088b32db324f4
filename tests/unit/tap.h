/*
 * tap.h - the smallest TAP producer that serves petrel's unit tests.
 *
 * Each test program prints "ok N - label" / "not ok N - label" lines and a
 * final plan; automake's tap-driver.sh counts them, so the suite summary
 * counts cases, not programs.  Header-only: include it in exactly one
 * translation unit per test program.
 */
#ifndef PETREL_TAP_H
#define PETREL_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

__attribute__((format(printf, 2, 3)))
static void tap_ok(int pass, const char *fmt, ...)
{
	va_list ap;
	printf("%sok %d - ", pass ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!pass)
		tap_failed++;
}

__attribute__((format(printf, 1, 2)))
static void tap_diag(const char *fmt, ...)
{
	va_list ap;
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return 0; /* failures are reported per case by the TAP driver */
}

#define TAP_STREQ(got, want, label) do { \
	const char *g_ = (got), *w_ = (want); \
	int p_ = (g_ && w_) ? strcmp(g_, w_) == 0 : g_ == w_; \
	tap_ok(p_, "%s", label); \
	if (!p_) tap_diag("got '%s', want '%s'", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
} while (0)

#endif
