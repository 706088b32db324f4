/*
 * fileio.h - whole writes and reads on file descriptors, retrying EINTR
 * and short transfers, so callers test one result.
 */
#ifndef PETREL_FILEIO_H
#define PETREL_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

/* Write all n bytes: 0, or -1 with errno set. */
int write_all(int fd, const void *p, size_t n) __attribute__((warn_unused_result));
/* Read up to n bytes at off, stopping only at the end of the file: the
 * count read, or -1 with errno set. */
ssize_t pread_all(int fd, void *p, size_t n, off_t off) __attribute__((warn_unused_result));

#endif
