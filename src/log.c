/*
 * log.c - graded logging to stderr or syslog (see log.h).
 */
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int log_foreground = 1;
static const char *log_ident = "petreld";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void log_open(const char *ident, int foreground)
{
	log_ident = ident;
	log_foreground = foreground;
	if (!foreground)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

static const char *grade_word[] = {
	[LOG_GRADE_INFO] = "",
	[LOG_GRADE_WARN] = "warning: ",
	[LOG_GRADE_ERROR] = "error: ",
	[LOG_GRADE_FATAL] = "fatal: ",
	[LOG_GRADE_PANIC] = "panic: ",
};

void log_vmsg(enum log_grade g, const char *fmt, va_list ap)
{
	char line[2048];
	vsnprintf(line, sizeof line, fmt, ap);
	if (!log_foreground) {
		static const int prio[] = {
			[LOG_GRADE_INFO] = LOG_INFO, [LOG_GRADE_WARN] = LOG_WARNING,
			[LOG_GRADE_ERROR] = LOG_ERR, [LOG_GRADE_FATAL] = LOG_CRIT,
			[LOG_GRADE_PANIC] = LOG_CRIT,
		};
		syslog(prio[g], "%s%s", grade_word[g], line);
		return;
	}
	struct timeval tv;
	struct tm tm;
	char ts[32];
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof ts, "%b %e %H:%M:%S", &tm);
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s.%03ld %s[%d]: %s%s\n", ts, (long)tv.tv_usec / 1000,
	        log_ident, (int)getpid(), grade_word[g], line);
	pthread_mutex_unlock(&log_lock);
}

#define LOG_FN(name, grade) \
	void name(const char *fmt, ...) \
	{ \
		va_list ap; \
		va_start(ap, fmt); \
		log_vmsg(grade, fmt, ap); \
		va_end(ap); \
	}

LOG_FN(log_info, LOG_GRADE_INFO)
LOG_FN(log_warn, LOG_GRADE_WARN)
LOG_FN(log_error, LOG_GRADE_ERROR)

void log_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_GRADE_FATAL, fmt, ap);
	va_end(ap);
	exit(1);
}

void log_panic(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_GRADE_PANIC, fmt, ap);
	va_end(ap);
	abort();
}
