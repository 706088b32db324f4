# modules/ratelimit: messages per hour/day per sender, client and user
module_LTLIBRARIES += modules/ratelimit/ratelimit.la
modules_ratelimit_ratelimit_la_SOURCES = modules/ratelimit/ratelimit.c \
	modules/ratelimit/ratelimit_store.c modules/ratelimit/ratelimit_store.h
modules_ratelimit_ratelimit_la_CFLAGS = $(MODULE_CFLAGS)
modules_ratelimit_ratelimit_la_LDFLAGS = $(MODULE_LDFLAGS)
