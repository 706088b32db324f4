/*
 * module_load.h - the module registry: load with libltdl, check, configure.
 *
 * A module is loaded once per daemon, by name, from module_path (or by
 * path when the name contains '/'): DIR/NAME.so, or DIR/.libs/NAME.so in
 * a libtool build tree; nowhere else (no LD_LIBRARY_PATH, no system
 * directories).  The file, and every directory above it, must belong to
 * root or to the user we run as and be writable by no one else (a sticky
 * directory excepted): it runs as root.  Before any of its code runs the
 * loader checks the exported descriptor: the API major version must equal
 * ours, the name must not be taken.  Its configuration block
 * modules.<name> is checked against the module's settings table, then
 * init() runs.  All errors go to 'errs' as "FILE:LINE: setting: reason".
 *
 * Each configuration generation has its own registry.  A module instance
 * may be in several (counted: refs): a reload shares the previous
 * generation's instance when the module's block, the global settings a
 * module can read (host->global_string) and the files the block names
 * (files_stamp) are unchanged, and loads and
 * initialises a new one otherwise.  An instance holds a reference to the
 * configuration it was initialised from; its fini() runs when the last
 * registry holding it is freed.  Slot numbers (session and transaction
 * state) are unique among the live instances (srv->slot_owner).
 */
#ifndef PETREL_MODULE_LOAD_H
#define PETREL_MODULE_LOAD_H

#include <petrel/petrel.h>
#include "config.h"

struct server;

struct petrel_conf {
	struct server *srv;        /* set once the server runs */
	int index;                 /* the module's slot number */
	struct config *cfg;
	config_setting_t *block;   /* NULL when the module has no block */
	const char *modname;
	struct buf *errs;
	int failed;
};

struct module {
	const struct petrel_module *desc;
	void *handle;              /* lt_dlhandle */
	void *state;
	bool inited;               /* init() ran: fini() is owed */
	struct petrel_conf conf;
	char *path;
	int refs;                  /* registries holding it */
	bool stopped;              /* transport stop() called (queue_stop) */
	struct config *cfg_ref;    /* the configuration conf.cfg / conf.block point into */
	struct buf files;          /* the files its block names, as they were at init */
};

struct modules {
	struct module **v;
	int n;
	struct server *srv;        /* handed to each module before its init() */
	/* while a reload builds: the running generation's registry and its
	 * configuration, whose unchanged instances module_get takes */
	struct modules *share;
	const struct config *share_cfg;
	int nshared;
};

/*
 * module_get - the module named 'name', loading and initialising it if it
 * is not loaded yet.  'where' is the setting that names it (for errors).
 * Returns NULL after appending the reason to errs.
 */
struct module *module_get(struct modules *m, struct config *cfg, const char *name,
                          config_setting_t *where, struct buf *errs);
struct module *module_find(struct modules *m, const char *name);  /* loaded only */
/* Drop this registry's reference to each instance: fini() and close the
 * ones no other registry holds.  At the last instance, libltdl ends. */
void modules_free(struct modules *m);

/* The module's transport operations the core may use: an ops field that
 * came with API minor N exists only for a module built with api_minor >= N
 * (the struct of an older module ends before it). */
static inline bool module_has_transport_api(const struct module *mod, unsigned minor)
{
	return mod->desc->transport && mod->desc->api_minor >= minor;
}

extern const struct petrel_host petrel_host_v1;

#endif
