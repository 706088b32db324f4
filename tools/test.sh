#!/bin/sh
# test.sh - install what is missing, build, and run the whole test suite
# (unit tests and black-box tests against the real daemon on loopback).
#   tools/test.sh                the normal build, in _build/default
#   tools/test.sh --sanitizers   an ASan+UBSan build, in _build/asan
# Exit status is make check's; the last line counts the test cases.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
name=default
flags=""
if [ "$1" = "--sanitizers" ]; then
  name=asan
  flags="--enable-sanitizers"
  # Leaks are checked; a module's dlclose would hide its symbols in reports.
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0"
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  # leaks in the C library and the sanitizer runtime, not ours (see the file)
  LSAN_OPTIONS="suppressions=$top/tools/lsan.supp:print_suppressions=0"
  export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
fi
sh "$top/tools/install-deps.sh"
[ -x "$top/configure" ] && [ "$top/configure" -nt "$top/configure.ac" ] || "$top/autogen.sh"
b="$top/_build/$name"
mkdir -p "$b"
(cd "$b" && "$top/configure" -q $flags)
make -s -C "$b" -j"$(nproc)"
status=0
make -s -C "$b" -j"$(nproc)" check || status=$?
sh "$top/tools/test-summary.sh" "$b"
exit $status
