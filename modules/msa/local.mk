# modules/msa: the submission stage (ports 587 and 465)
module_LTLIBRARIES += modules/msa/msa.la
modules_msa_msa_la_SOURCES = modules/msa/msa.c \
	modules/msa/msa_senders.c modules/msa/msa_senders.h
modules_msa_msa_la_CFLAGS = $(MODULE_CFLAGS)
modules_msa_msa_la_LDFLAGS = $(MODULE_LDFLAGS)
