/*
 * config.h - petrel.conf: load, check, hold one configuration generation.
 *
 * The file is libconfig syntax.  Every top-level setting is declared in a
 * table in config.c with its type and a one-line help text; unknown names,
 * wrong types and bad values are errors reported as
 * "FILE:LINE: setting: reason", all of them, and the daemon refuses to
 * start.  Without a file the embedded default configuration is used.
 *
 * A struct config owns everything it points to, including the libconfig
 * tree (module blocks are read from it when modules initialise).
 */
#ifndef PETREL_CONFIG_H
#define PETREL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <libconfig.h>

#include "mem.h"
#include "routes.h"

enum tls_mode { TLS_NONE = 0, TLS_STARTTLS, TLS_IMPLICIT };

struct listener_conf {
	char *listen;                   /* as written */
	char *stage;                    /* module name */
	enum tls_mode tls;
	/* TLS key pair: the listener's own, else the top-level one (NULL when
	 * neither is set); the settings say where, for errors about the files. */
	char *tls_cert_file, *tls_key_file;
	config_setting_t *tls_cert_setting, *tls_key_setting;
	bool auth;                      /* AUTH offered (RFC 4954) */
	bool auth_cleartext;            /* ... also without TLS */
	char **filters;                 /* this listener's chain, or NULL: the global one */
	int nfilters;
	config_setting_t *filters_setting;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	config_setting_t *setting;      /* for error locations */
};

struct cidr {
	int family;                     /* AF_INET or AF_INET6 */
	unsigned char net[16];
	int bits;
};

struct config {
	char *file;                     /* path, or "(default)" */
	char *hostname;
	char *spool;                    /* absolute */
	char *user;                     /* NULL: stay as started */
	char *control_socket;           /* as configured (default "control") */
	char *control_path;             /* ... absolute: SPOOL/control by default */
	struct listener_conf *listeners;
	int nlisteners;
	char **domains;                 /* lower case */
	int ndomains;
	struct cidr *relay;
	int nrelay;
	char **filters;
	int nfilters;
	char *router;                   /* router module name */
	char *module_path;              /* colon-separated dirs */
	char *module_path_conf;         /* ... as configured, without $PETREL_MODULE_PATH */
	uint64_t message_size_limit;
	uint64_t queue_minfree;
	int recipient_limit;
	int hopcount_limit;
	uint64_t header_size_limit;     /* octets of one header field */
	int header_count_limit;         /* fields of one header section */
	int smtp_timeout;               /* seconds */
	int data_timeout;
	int queue_lifetime;             /* seconds */
	int retry_initial;
	int retry_max;
	int delivery_workers;
	int filter_workers;
	int max_connections;            /* may be lowered at start to fit RLIMIT_NOFILE */
	int pending_timeout;            /* seconds a suspended hook may wait */
	char *tls_cert_file;            /* default key pair of TLS listeners */
	char *tls_key_file;
	char *auth_passwords;           /* user:crypt-hash file for AUTH */
	int auth_failure_limit;         /* failed AUTHs before 421 */
	int auth_client_failure_limit;  /* bad passwords per client address and window, 0: off */
	int auth_client_failure_window; /* seconds */
	int auth_client_concurrency;    /* password checks at once per client address */
	int soft_error_limit;           /* errors before each reply waits error_sleep_time */
	int hard_error_limit;           /* errors before 421 */
	int error_sleep_time;           /* seconds */
	int junk_command_limit;         /* junk commands before each one counts as an error */
	/* relay (issue 8) */
	char *resolver;                 /* "ADDR:PORT" of a DNS server, NULL: resolv.conf */
	struct route *routes;           /* the routes table, in order (routes.h) */
	int nroutes;
	char *relayhost;                /* normalised "[host]:port" / "host:port", NULL: MX */
	char *relayhost_tls;            /* "starttls", "implicit", "none"; NULL: unset */
	char *relayhost_credentials;    /* file of "user:password" */
	struct route relay_route;       /* the relayhost as a route: its options */
	int delay_warning_time;         /* seconds; 0: no delay warnings */
	int client_connection_limit;    /* sessions per client address (IPv6: per /64), 0: none */
	int min_data_rate;              /* bytes/s DATA/BDAT must keep up, 0: none */
	int greet_pause;                /* ms before the greeting (early talkers get 554), 0: none */
	char *pickup_socket;            /* as written ("": none) */
	char *pickup_path;              /* ... absolute (relative: inside the spool); NULL: none */
	char *metrics_listen;           /* "ADDR:PORT" of GET /metrics, NULL: off (metrics.c) */
	config_t cfg;                   /* the parsed tree */
};

/* The embedded default configuration (petreld without -c). */
extern const char config_default_text[];

/*
 * config_load - parse and check a configuration.
 *   path: file to read, or NULL for the embedded default.
 *   errs: receives one line per problem ("FILE:LINE: setting: reason\n").
 * Returns a new config, or NULL when there was any error.
 */
struct config *config_load(const char *path, struct buf *errs)
	__attribute__((warn_unused_result));
void config_free(struct config **c);

/* Record an error at a setting ("FILE:LINE: path: text"). */
void config_error_at(const struct config *c, config_setting_t *s, struct buf *errs,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Read relayhost_credentials (at start, before privileges are dropped):
 * refused when group or others may read it.  0, or -1 with errs. */
int config_read_credentials(struct config *c, struct buf *errs)
	__attribute__((warn_unused_result));

/* Where mail for a non-local domain goes: the matching route, else the
 * relayhost's pseudo-route, else NULL (by MX, options none).  *nexthop
 * is "" for MX.  Local domains: NULL and "". */
const struct route *config_route_for(const struct config *c, const char *domain,
                                     const char **nexthop);

bool config_is_local_domain(const struct config *c, const char *domain);
bool config_may_relay(const struct config *c, const struct sockaddr *sa);
int config_parse_cidr(const char *s, struct cidr *out) __attribute__((warn_unused_result));
bool cidr_match(const struct cidr *c, const struct sockaddr *sa);
int config_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                        const char **why) __attribute__((warn_unused_result));

/* The name of top-level setting i, NULL past the end (for tests and docs). */
const char *config_setting_name_at(int i);

/* petreld -n / -d / -p: the top-level settings that differ from the
 * defaults, every default, or every effective value, one "name = value;"
 * line each in petrel.conf syntax (unset strings as a comment), appended
 * to o.  The modules group is left out unless with_modules. */
enum config_show { CONFIG_SHOW_NONDEFAULT, CONFIG_SHOW_DEFAULTS, CONFIG_SHOW_EFFECTIVE };
void config_show(const struct config *c, enum config_show how, bool with_modules, struct buf *o);

/* Append setting s (any libconfig value) to o in petrel.conf syntax. */
void config_render(config_setting_t *s, int indent, struct buf *o);

/* Print every top-level setting with its help (petreld -h settings). */
void config_print_help(void);

#endif
