/*
 * fuzz_common.h - small helpers shared by the libFuzzer harnesses.
 *
 *   fuzz_tmpdir()   one temporary directory per process, made on first
 *                   use (under $TMPDIR or /tmp) and removed with its
 *                   contents at exit; a crash leaves it for inspection.
 *   fuzz_rm_under() remove everything below a directory, keeping it.
 *   fuzz_fail()     report a broken invariant and abort(): libFuzzer
 *                   saves the input as a crash.
 *   fuzz_memfd()    an anonymous file holding given bytes, offset at end.
 *
 * Everything is static: each harness is one translation unit.
 */
#ifndef PETREL_FUZZ_COMMON_H
#define PETREL_FUZZ_COMMON_H

#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char fuzz_dir[4096];

static __attribute__((unused)) int fuzz_rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(path) < 0 ? 0 : 0;
}

/* Remove dir and everything in it. */
static __attribute__((unused)) void fuzz_rm_tree(const char *dir)
{
	nftw(dir, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static __attribute__((unused)) int fuzz_rm_below_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	if (f->level > 0)
		remove(path);
	return 0;
}

/* Remove everything below dir; dir itself stays. */
static __attribute__((unused)) void fuzz_rm_under(const char *dir)
{
	nftw(dir, fuzz_rm_below_one, 16, FTW_DEPTH | FTW_PHYS);
}

static __attribute__((unused)) void fuzz_tmpdir_cleanup(void)
{
	if (fuzz_dir[0])
		fuzz_rm_tree(fuzz_dir);
}

static __attribute__((unused)) const char *fuzz_tmpdir(void)
{
	if (fuzz_dir[0])
		return fuzz_dir;
	const char *t = getenv("TMPDIR");
	snprintf(fuzz_dir, sizeof fuzz_dir, "%s/petrel-fuzz-XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(fuzz_dir)) {
		perror("fuzz: mkdtemp");
		exit(1);
	}
	atexit(fuzz_tmpdir_cleanup);
	return fuzz_dir;
}

__attribute__((format(printf, 1, 2), noreturn))
static __attribute__((unused)) void fuzz_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fuzz: invariant broken: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

/* An anonymous file holding p[0..n), its offset at the end. */
static __attribute__((unused)) int fuzz_memfd(const void *p, size_t n)
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);
	if (fd < 0) {
		perror("fuzz: memfd_create");
		exit(1);
	}
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w <= 0) {
			perror("fuzz: write");
			exit(1);
		}
		c += w;
		n -= (size_t)w;
	}
	return fd;
}

#endif
