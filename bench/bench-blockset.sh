#!/bin/sh
# Build and run the residency radix tree benchmark (bench-blockset.c)
# and print its results as markdown, preceded by the machine and the
# command, ready for bench/results-blockset.md.
#
#   bench/bench-blockset.sh [bench-blockset options: --quick, --reps N,
#                            --skip-64t-50]
#
# Builds, optimised and without sanitizers, in $BUILDDIR (default
# _build-bench-blockset at the top of the source tree).  Build output
# goes to stderr, results to stdout.  The full run takes a few minutes
# and about 5 GiB of memory (the 64 TiB 50% state: tree and flat bitmap).

set -e

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=${BUILDDIR:-$srcdir/_build-bench-blockset}
bench=$builddir/bench/bench-blockset

{
    if [ ! -f "$builddir/config.status" ]; then
        [ -x "$srcdir/configure" ] || (cd "$srcdir" && autoreconf -fi)
        mkdir -p "$builddir"
        (cd "$builddir" && "$srcdir/configure")
    fi
    # Other parts of server/ may not build while they are being written:
    # then compile the two files the benchmark needs directly.
    if ! { make -C "$builddir/server" libshadowserver.la &&
           make -C "$builddir/bench" bench-blockset; }; then
        echo "bench-blockset.sh: the library did not build;" \
             "compiling blockset.c into the benchmark directly" >&2
        mkdir -p "$builddir/bench"
        ${CC:-cc} -std=gnu11 -O2 -g -I"$builddir" -I"$srcdir/server" \
            "$srcdir/bench/bench-blockset.c" "$srcdir/server/blockset.c" \
            -o "$bench"
    fi
} >&2

echo "## Residency radix tree (server/blockset.c) against a flat bitmap"
echo
echo "- machine: $(nproc) CPUs ($(grep -m1 '^model name' /proc/cpuinfo |
                                 sed 's/.*: //')), $(free -g |
                                 awk '/^Mem:/ { print $2 }') GiB RAM," \
     "Linux $(uname -r)"
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), load average at start:" \
     "$(cut -d' ' -f1-3 /proc/loadavg)"
echo "- commit: $(cd "$srcdir" && git rev-parse --short HEAD 2>/dev/null ||
                  echo unknown)"
echo "- command: \`${GLIBC_TUNABLES:+GLIBC_TUNABLES=$GLIBC_TUNABLES }bench/bench-blockset.sh${*:+ $*}\`"
echo
"$bench" "$@"
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (a shared" \
     "machine: other work running at the same time slows both columns)."
