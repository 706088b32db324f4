# modules/router: local domains, mailboxes, aliases
module_LTLIBRARIES += modules/router/router.la
modules_router_router_la_SOURCES = modules/router/router.c
modules_router_router_la_CFLAGS = $(MODULE_CFLAGS)
modules_router_router_la_LDFLAGS = $(MODULE_LDFLAGS)
