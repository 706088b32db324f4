#!/bin/sh
# quickstart.sh - install what is missing, build, and run petreld in the
# foreground with its embedded default configuration:
#   SMTP on 127.0.0.1:2525, local domain "localhost",
#   spool and maildirs in ./petrel-data/ (mail lands in
#   petrel-data/mail/localhost/<user>/new/).
# Stop it with Ctrl-C (SIGINT) or SIGTERM.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
sh "$top/tools/install-deps.sh"
b="$top/_build/default"
if [ ! -x "$b/src/petreld" ] || [ "$top/configure.ac" -nt "$b/Makefile" ]; then
  [ -x "$top/configure" ] || "$top/autogen.sh"
  mkdir -p "$b"
  (cd "$b" && "$top/configure" -q)
fi
make -s -C "$b" -j"$(nproc)"
PETREL_MODULE_PATH="$b/modules/mta:$b/modules/router:$b/modules/maildir"
export PETREL_MODULE_PATH
echo "petreld: listening on 127.0.0.1:2525; try: swaks --server 127.0.0.1:2525 --to user@localhost" >&2
exec "$b/src/petreld" -f "$@"
