/*
 * ctl_json.h - the JSON of the control socket (doc/control-protocol.md):
 * strings as the daemon writes them, and petrelctl's reader of its reply
 * lines into a tree.
 *
 * Bounds: nesting at most CTL_JSON_DEPTH; the input is one line the
 * caller already bounded.  Ownership: ctl_json_parse returns a tree the
 * caller frees with ctl_json_free.
 */
#ifndef PETREL_CTL_JSON_H
#define PETREL_CTL_JSON_H

#include <stdbool.h>
#include <stddef.h>

struct buf;

#define CTL_JSON_DEPTH 32

enum ctl_json_type { CJ_NULL, CJ_BOOL, CJ_NUM, CJ_STR, CJ_ARR, CJ_OBJ };

struct ctl_json {
	enum ctl_json_type t;
	bool b;
	double num;
	char *str;                 /* CJ_STR: UTF-8, NUL-terminated */
	struct ctl_json *items;    /* CJ_ARR, CJ_OBJ: n values */
	char **keys;               /* CJ_OBJ: n keys */
	int n;
};

/* Append n bytes of s to b as a JSON string: '"' and '\\' escaped,
 * control bytes as \u00XX, bytes that are not UTF-8 as \ufffd: the
 * result is valid JSON whatever s holds. */
void ctl_json_quote(struct buf *b, const char *s, size_t n);

/* NULL when s is not one JSON value (trailing spaces allowed). */
struct ctl_json *ctl_json_parse(const char *s, size_t len);
void ctl_json_free(struct ctl_json **v);

/* Member of an object, NULL when absent (or v is not an object). */
const struct ctl_json *ctl_json_get(const struct ctl_json *v, const char *key);
/* Conveniences: the member as a string ("" when absent or not a string),
 * as a number (0), as a boolean (false). */
const char *ctl_json_str(const struct ctl_json *v, const char *key);
double ctl_json_num(const struct ctl_json *v, const char *key);
bool ctl_json_bool(const struct ctl_json *v, const char *key);

#endif
