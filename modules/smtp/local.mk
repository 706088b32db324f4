# modules/smtp: the smtp transport (MTA relay: MX or relay host).  The
# client, scheduler and resolver are also the lmtp transport's
# (modules/lmtp/local.mk): one list of sources and flags for both.
smtp_client_sources = modules/smtp/smtp.c modules/smtp/smtp_dns.c \
	modules/smtp/smtp_dest.c modules/smtp/smtp_client.c modules/smtp/smtp_int.h \
	modules/smtp/smtp_syntax.c modules/smtp/smtp_syntax.h
smtp_client_cflags = $(MODULE_CFLAGS) $(CARES_CFLAGS) $(OPENSSL_CFLAGS)
smtp_client_libs = $(CARES_LIBS) $(OPENSSL_LIBS)

module_LTLIBRARIES += modules/smtp/smtp.la
modules_smtp_smtp_la_SOURCES = modules/smtp/smtp_module.c $(smtp_client_sources)
modules_smtp_smtp_la_CFLAGS = $(smtp_client_cflags)
modules_smtp_smtp_la_LDFLAGS = $(MODULE_LDFLAGS)
modules_smtp_smtp_la_LIBADD = $(smtp_client_libs)
