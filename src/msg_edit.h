/*
 * msg_edit.h - the received message as filters see it, and their edits.
 *
 * After the final dot the queue file is mapped read-only once; its
 * top-level header section is indexed and its MIME structure parsed
 * (mime.c).  Filters read headers and parts through the host and record
 * changes (headers added, changed, removed; recipients added, removed).
 * If anything changed, msg_rewrite() writes a new queue slot with the
 * new envelope and header section and the untouched body, and puts it in
 * place of the old one before the commit.
 */
#ifndef PETREL_MSG_EDIT_H
#define PETREL_MSG_EDIT_H

#include "session.h"

struct spool;

int msg_load(struct petrel_txn *t, const char **err) __attribute__((warn_unused_result));
void msg_free(struct petrel_txn *t);
int msg_nparts(struct petrel_txn *t);
/* The first MIME part below the message (index >= 1) with a header field
 * longer than field_max octets or more than fields_max fields, with *reply
 * set to the 552 5.3.4 to give; -1 when none (or the message is not
 * loaded).  Part 0, the message itself, is not looked at: smtp_data.c
 * held the client's section to the limits as it streamed, and the loaded
 * copy also holds our own Received: field, which would make a section
 * exactly at header_count_limit one over. */
int msg_part_over_limit(struct petrel_txn *t, uint64_t field_max, int fields_max,
                        const char **reply);
struct petrel_part *msg_part(struct petrel_txn *t, int i);
/* Free part i's decoded body (part_body), once every hook has seen the
 * part: bodies are "valid until the hook returns", and holding each
 * container's copy would cost the message size once per nesting level. */
void msg_part_release(struct petrel_txn *t, int i);
bool msg_changed(struct petrel_txn *t);
int msg_rewrite(struct petrel_txn *t, struct spool *sp, const char **err)
	__attribute__((warn_unused_result));

/* host API */
int msg_header_count(struct petrel_txn *t);
const char *msg_header_name(struct petrel_txn *t, int i);
const char *msg_header_value(struct petrel_txn *t, int i);
const char *msg_header_decoded(struct petrel_txn *t, int i);
int msg_header_add(struct petrel_txn *t, const char *name, const char *value, int prepend);
int msg_header_change(struct petrel_txn *t, const char *name, int n, const char *value);
int msg_header_remove(struct petrel_txn *t, const char *name, int n);

int part_index(struct petrel_part *p);
int part_depth(struct petrel_part *p);
int part_is_multipart(struct petrel_part *p);
const char *part_content_type(struct petrel_part *p);
const char *part_filename(struct petrel_part *p);
const char *part_disposition(struct petrel_part *p);
const char *part_charset(struct petrel_part *p);
unsigned part_flags(struct petrel_part *p);
const char *part_body(struct petrel_part *p, size_t *len);

#endif
