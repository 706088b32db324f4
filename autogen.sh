#!/bin/sh
# autogen.sh - generate configure and Makefile.in from the sources.
set -e
cd "$(dirname "$0")"
mkdir -p m4 build-aux
autoreconf --force --install --warnings=all
