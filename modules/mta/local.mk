# modules/mta: the inbound MX stage
module_LTLIBRARIES += modules/mta/mta.la
modules_mta_mta_la_SOURCES = modules/mta/mta.c
modules_mta_mta_la_CFLAGS = $(MODULE_CFLAGS)
modules_mta_mta_la_LDFLAGS = $(MODULE_LDFLAGS)
