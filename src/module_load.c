/*
 * module_load.c - load, check and configure modules (see module_load.h).
 */
#include "module_load.h"
#include "log.h"
#include "mem.h"

#include <ltdl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ltdl_ready;

struct module *module_find(struct modules *m, const char *name)
{
	for (int i = 0; i < m->n; i++)
		if (!strcmp(m->v[i]->desc->name, name))
			return m->v[i];
	return NULL;
}

static const char *stype_word(enum petrel_setting_type t)
{
	switch (t) {
	case PETREL_SET_STRING: return "a string";
	case PETREL_SET_INT: return "an integer";
	case PETREL_SET_BOOL: return "true or false";
	case PETREL_SET_STRING_LIST: return "a list of strings";
	default: return "?";
	}
}

static int stype_ok(config_setting_t *s, enum petrel_setting_type t)
{
	int ty = config_setting_type(s);
	switch (t) {
	case PETREL_SET_STRING: return ty == CONFIG_TYPE_STRING;
	case PETREL_SET_INT: return ty == CONFIG_TYPE_INT || ty == CONFIG_TYPE_INT64;
	case PETREL_SET_BOOL: return ty == CONFIG_TYPE_BOOL;
	case PETREL_SET_STRING_LIST:
		if (ty != CONFIG_TYPE_ARRAY && ty != CONFIG_TYPE_LIST)
			return 0;
		for (int i = 0; i < config_setting_length(s); i++)
			if (config_setting_type(config_setting_get_elem(s, i)) != CONFIG_TYPE_STRING)
				return 0;
		return 1;
	default: return 0;
	}
}

/* Check a module's block against its declared settings. */
static int check_block(struct module *mod, struct config *cfg, struct buf *errs)
{
	const struct petrel_setting *st = mod->desc->settings;
	config_setting_t *b = mod->conf.block;
	int bad = 0;
	for (int i = 0; b && i < config_setting_length(b); i++) {
		config_setting_t *s = config_setting_get_elem(b, i);
		const struct petrel_setting *k = NULL;
		for (int j = 0; st && st[j].type != PETREL_SET_END; j++)
			if (!strcmp(st[j].name, config_setting_name(s)))
				k = &st[j];
		if (!k) {
			config_error_at(cfg, s, errs, "unknown setting of module '%s'", mod->desc->name);
			bad = 1;
		} else if (!stype_ok(s, k->type)) {
			config_error_at(cfg, s, errs, "must be %s (%s)", stype_word(k->type), k->help);
			bad = 1;
		}
	}
	for (int j = 0; st && st[j].type != PETREL_SET_END; j++)
		if (st[j].required && (!b || !config_setting_get_member(b, st[j].name))) {
			config_error_at(cfg, b ? b : config_lookup(&cfg->cfg, "modules"), errs,
			                "module '%s' needs setting '%s' (%s)", mod->desc->name,
			                st[j].name, st[j].help);
			bad = 1;
		}
	return bad ? -1 : 0;
}

/* Report a problem with module 'name' at the setting that named it. */
__attribute__((format(printf, 5, 6)))
static void where_error(struct config *cfg, config_setting_t *where, struct buf *errs,
                        const char *name, const char *fmt, ...)
{
	struct buf msg = {0};
	va_list ap;
	va_start(ap, fmt);
	buf_vaddf(&msg, fmt, ap);
	va_end(ap);
	if (where)
		config_error_at(cfg, where, errs, "%s", msg.data);
	else
		buf_addf(errs, "%s:0: module %s: %s\n", cfg->file, name, msg.data);
	buf_free(&msg);
}

struct module *module_get(struct modules *m, struct config *cfg, const char *name,
                          config_setting_t *where, struct buf *errs)
{
	const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	for (int i = 0; i < m->n; i++)
		if (!strcmp(m->v[i]->desc->name, base) || (m->v[i]->path && !strcmp(m->v[i]->path, name)))
			return m->v[i];
	if (!ltdl_ready) {
		if (lt_dlinit() != 0)
			log_fatal("lt_dlinit: %s", lt_dlerror());
		ltdl_ready = 1;
	}
	lt_dlsetsearchpath(cfg->module_path);
	lt_dlhandle h = lt_dlopenext(name);
	if (!h) {
		where_error(cfg, where, errs, name, "module '%s' cannot be loaded: %s; searched %s",
		            name, lt_dlerror(), cfg->module_path);
		return NULL;
	}
	const struct petrel_module *d = lt_dlsym(h, PETREL_MODULE_SYMBOL);
	if (!d) {
		where_error(cfg, where, errs, name,
		            "'%s' is not a petrel module (no symbol " PETREL_MODULE_SYMBOL ")", name);
		lt_dlclose(h);
		return NULL;
	}
	if (d->api_major != PETREL_API_MAJOR) {
		where_error(cfg, where, errs, name,
		            "module '%s' refused: built for module API %u.%u, this petreld has API %d.%d",
		            name, d->api_major, d->api_minor, PETREL_API_MAJOR, PETREL_API_MINOR);
		lt_dlclose(h);
		return NULL;
	}
	if (!d->name || !d->name[0]) {
		where_error(cfg, where, errs, name, "module '%s' has no name in its descriptor", name);
		lt_dlclose(h);
		return NULL;
	}
	if (module_find(m, d->name)) {
		where_error(cfg, where, errs, name,
		            "module '%s' refused: another loaded module is named '%s'", name, d->name);
		lt_dlclose(h);
		return NULL;
	}
	struct module *mod = xcalloc(1, sizeof *mod);
	mod->desc = d;
	mod->handle = h;
	mod->path = strchr(name, '/') ? xstrdup(name) : NULL;
	char *bpath = xasprintf("modules.%s", d->name);
	mod->conf = (struct petrel_conf){ .srv = m->srv, .cfg = cfg, .index = m->n,
	                                  .block = config_lookup(&cfg->cfg, bpath),
	                                  .modname = d->name, .errs = errs };
	free(bpath);
	m->v = xrealloc(m->v, (size_t)(m->n + 1) * sizeof *m->v);
	m->v[m->n++] = mod;
	if (check_block(mod, cfg, errs) < 0)
		return NULL;
	mod->inited = true;
	if (d->init && (d->init(&petrel_host_v1, &mod->conf, &mod->state) < 0 || mod->conf.failed)) {
		if (!mod->conf.failed)
			where_error(cfg, where, errs, d->name, "module '%s' failed to initialise", d->name);
		return NULL;
	}
	return mod;
}

void modules_free(struct modules *m)
{
	for (int i = 0; i < m->n; i++) {
		struct module *mod = m->v[i];
		if (mod->inited && mod->desc->fini)
			mod->desc->fini(mod->state);
		lt_dlclose(mod->handle);
		free(mod->path);
		free(mod);
	}
	xfree(&m->v);
	m->n = 0;
	if (ltdl_ready) {
		lt_dlexit();
		ltdl_ready = 0;
	}
}
