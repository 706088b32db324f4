#!/bin/sh
# deb-check.sh - build the Debian packages in a temporary copy of the tree
# (the tree stays clean), run lintian on them and list their contents;
# nothing is installed.  Results go to _build/deb/tests/package.{trs,log}
# as automake test results, so tools/test-summary.sh counts them:
# "package builds" and "lintian: no errors".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/_build/deb/tests"
mkdir -p "$out"
log="$out/package.log"; trs="$out/package.trs"
: > "$log"; : > "$trs"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/petrel-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
ver=$(sed -n '1s/.*(\(.*\)).*/\1/p' "$top/debian/changelog")
src="$tmp/petrel-$ver"
mkdir "$src"
(cd "$top" && git ls-files -co --exclude-standard | grep -v '^_build/' | tar -cf - -T -) |
  tar -xf - -C "$src"
result() { echo ":test-result: $1" >> "$trs"; echo "$1: $2" | tee -a "$log"; }
if (cd "$src" && DEB_BUILD_OPTIONS="noautodbgsym parallel=$(nproc)" \
      dpkg-buildpackage -us -uc -b) >> "$log" 2>&1; then
  result PASS "dpkg-buildpackage -us -uc -b"
  for d in "$tmp"/*.deb; do
    echo "== dpkg -c $(basename "$d")"; dpkg -c "$d" | awk '{print $1, $2, $6}'
  done | tee -a "$log"
  lintian --fail-on error "$tmp"/*.changes > "$tmp/lintian.txt" 2>&1; lst=$?
  grep -v 'running with root privileges' "$tmp/lintian.txt" | tee -a "$log"
  if [ $lst -eq 0 ]; then result PASS "lintian: no errors"; else result FAIL "lintian: errors"; fi
else
  tail -30 "$log"
  result FAIL "dpkg-buildpackage -us -uc -b (see $log)"
  result SKIP "lintian (no package)"
fi
grep -q FAIL "$trs" && exit 1
exit 0
