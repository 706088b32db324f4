#!/bin/sh
# headers.sh - CPU and event-loop stall of hostile header sections: a 10 MB
# message of 2,000,000 one-line fields and one of 2,500,000 continuation
# lines, through petreld with the regex filter (see bench/headers.py).
#
#   bench/headers.sh [--cases lines,cont,lines-edit] [--count N] [-L] [--timeout S]
#   PETREL_BUILD=/path/to/_build/default bench/headers.sh   # another build
#
# -L raises header_size_limit/header_count_limit so that the message is
# indexed, matched and edited instead of refused.  Loopback only.
exec python3 "$(dirname "$0")/headers.py" "$@"
