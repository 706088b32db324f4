# modules/regex: header, body, MIME and envelope checks with PCRE2 rules
module_LTLIBRARIES += modules/regex/regex.la
modules_regex_regex_la_SOURCES = modules/regex/regex.c modules/regex/regex_rules.c \
	modules/regex/regex_int.h
modules_regex_regex_la_CFLAGS = $(MODULE_CFLAGS) $(PCRE2_CFLAGS)
modules_regex_regex_la_LDFLAGS = $(MODULE_LDFLAGS)
modules_regex_regex_la_LIBADD = $(PCRE2_LIBS)
