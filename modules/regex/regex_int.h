/*
 * regex_int.h - what the two halves of the regex module share: the rule
 * types and the module state.  regex_rules.c reads and compiles the rules
 * file; regex.c matches and acts, and holds the hooks.
 */
#ifndef PETREL_REGEX_INT_H
#define PETREL_REGEX_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <petrel/petrel.h>

#include <stdbool.h>
#include <stddef.h>

#define DEFAULT_REJECT   "550 5.7.1 Message content rejected"
#define DEFAULT_TEMPFAIL "451 4.7.1 Try again later"
#define DEFAULT_BODY_LIMIT (1024 * 1024)   /* bytes of each text part scanned */
#define MAX_CONF_ERRORS 20
#define LOG_SUBJECT_MAX 200
#define MATCH_LIMIT 1000000

enum target {
	T_HEADER,       /* header NAME: the decoded value */
	T_HEADER_ANY,   /* header *: "Name: decoded value" */
	T_BODY,
	T_MIME_TYPE,
	T_FILENAME,
	T_SENDER,
	T_RECIPIENT,
	T_CLIENT,
	T_HELO,
};

enum action {
	A_REJECT,
	A_TEMPFAIL,
	A_DISCARD,
	A_HOLD,
	A_REDIRECT,
	A_ADD,
	A_REMOVE,
	A_LOG,
};

struct rule {
	int line;
	enum target target;
	char *header;           /* T_HEADER: the header name */
	pcre2_code *re;
	pcre2_match_data *md;
	enum action action;
	char *arg;              /* reply, address, log text; NULL if none */
	char *add_name;         /* A_ADD */
	char *add_value;
};

struct regex_state {
	petrel_conf *conf;
	char *file;
	struct rule *rules;
	int nrules;
	bool has[T_HELO + 1];   /* some rule has this target */
	pcre2_match_context *mctx;
	long long body_limit;
};

/* The host, set at init (one daemon, one module instance of each kind). */
extern const struct petrel_host *regex_host;

const char *action_word(enum action a);
/* Read, check and compile st->file into st->rules; -1 after reporting
 * every error (FILE:LINE: ...) through conf_error. */
int rules_load(struct regex_state *st);
void rule_free(struct rule *r);

void *xmalloc(size_t n);
char *xstrdup(const char *s);

#endif
