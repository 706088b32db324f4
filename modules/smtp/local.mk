# modules/smtp: the smtp transport (MTA relay: MX or relay host)
module_LTLIBRARIES += modules/smtp/smtp.la
modules_smtp_smtp_la_SOURCES = modules/smtp/smtp_module.c modules/smtp/smtp.c modules/smtp/smtp_dns.c \
	modules/smtp/smtp_dest.c modules/smtp/smtp_client.c modules/smtp/smtp_int.h \
	modules/smtp/smtp_syntax.c modules/smtp/smtp_syntax.h
modules_smtp_smtp_la_CFLAGS = $(MODULE_CFLAGS) $(CARES_CFLAGS) $(OPENSSL_CFLAGS)
modules_smtp_smtp_la_LDFLAGS = $(MODULE_LDFLAGS)
modules_smtp_smtp_la_LIBADD = $(CARES_LIBS) $(OPENSSL_LIBS)
