# modules/lmtp: the lmtp transport (MDA: an LMTP server such as Dovecot's),
# built from the smtp transport's sources with its own descriptor
module_LTLIBRARIES += modules/lmtp/lmtp.la
modules_lmtp_lmtp_la_SOURCES = modules/lmtp/lmtp.c modules/smtp/smtp.c modules/smtp/smtp_dns.c \
	modules/smtp/smtp_dest.c modules/smtp/smtp_client.c modules/smtp/smtp_int.h \
	modules/smtp/smtp_syntax.c modules/smtp/smtp_syntax.h
modules_lmtp_lmtp_la_CFLAGS = $(MODULE_CFLAGS) $(CARES_CFLAGS) $(OPENSSL_CFLAGS)
modules_lmtp_lmtp_la_LDFLAGS = $(MODULE_LDFLAGS)
modules_lmtp_lmtp_la_LIBADD = $(CARES_LIBS) $(OPENSSL_LIBS)
