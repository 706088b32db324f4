# modules/lmtp: the lmtp transport (MDA: an LMTP server such as Dovecot's),
# the smtp transport's sources (modules/smtp/local.mk) with its own
# descriptor
module_LTLIBRARIES += modules/lmtp/lmtp.la
modules_lmtp_lmtp_la_SOURCES = modules/lmtp/lmtp.c $(smtp_client_sources)
modules_lmtp_lmtp_la_CFLAGS = $(smtp_client_cflags)
modules_lmtp_lmtp_la_LDFLAGS = $(MODULE_LDFLAGS)
modules_lmtp_lmtp_la_LIBADD = $(smtp_client_libs)
