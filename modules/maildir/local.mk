# modules/maildir: the maildir transport
module_LTLIBRARIES += modules/maildir/maildir.la
modules_maildir_maildir_la_SOURCES = modules/maildir/maildir.c \
	modules/maildir/maildir_copy.c modules/maildir/maildir_copy.h
modules_maildir_maildir_la_CFLAGS = $(MODULE_CFLAGS)
modules_maildir_maildir_la_LDFLAGS = $(MODULE_LDFLAGS)
