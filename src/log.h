/*
 * log.h - graded logging, Postfix style: one line per event.
 *
 * Grades: info (normal events), warn (something odd, handled), error (a
 * failure of one message or session; the daemon goes on), fatal (the
 * environment makes going on impossible: logs and exits 1), panic (a bug:
 * logs and aborts).  Lines about a message start with its queue id,
 * "QID: ...", so operators can grep one message's life.
 *
 * In the foreground (-f) lines go to stderr with a timestamp; otherwise to
 * syslog (facility mail).  Thread-safe: workers log too.
 */
#ifndef PETREL_LOG_H
#define PETREL_LOG_H

#include <stdarg.h>

enum log_grade { LOG_GRADE_INFO, LOG_GRADE_WARN, LOG_GRADE_ERROR,
                 LOG_GRADE_FATAL, LOG_GRADE_PANIC };

void log_open(const char *ident, int foreground);
void log_vmsg(enum log_grade g, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
