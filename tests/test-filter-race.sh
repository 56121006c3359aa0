#!/usr/bin/env bash
# Many threads writing and reading overlapping blocks through the filter
# while copy-on-read is in flight (test-race.c says how it checks), for
# small and large blocks, with and without background hydration racing
# too, and for shadow-writes=both.  Ends with byte-exact
# comparisons of the filter, the shadow and (in both mode) the origin
# against the expected image.
source "${abs_top_srcdir}/tests/functions.sh"
requires nbdcopy --version
race=$abs_top_builddir/tests/test-race
[ -x "$race" ] || fail "$race not built"

size=$((9216 * 455))            # ~4 MiB, partial last block at 4K and 64K
seconds=${RACE_SECONDS:-4}

run_case ()
{
    local name=$1; shift
    echo "=== $name: $*"
    random_file origin-$name.img $size
    start_nbdkit shadow-$name memory $size
    start_filter $name file origin-$name.img \
        shadow="$(uri $TESTDIR/shadow-$name.sock)" "$@"

    "$race" "$(uri $TESTDIR/$name.sock)" origin-$name.img expected-$name.img \
        $seconds || fail "$name: test-race failed"

    nbdcopy "$(uri $TESTDIR/$name.sock)" through-$name.img
    same_files expected-$name.img through-$name.img
    wait_synced $name 30
    nbdcopy "$(uri $TESTDIR/shadow-$name.sock)" shadow-$name.img
    same_files expected-$name.img shadow-$name.img
    stop_filter $name
}

# Copy-on-read alone, then with the background copier racing as well.
run_case bs4k shadow-block-size=4K shadow-background=off
run_case bs64k shadow-block-size=64K
run_case both shadow-block-size=4K shadow-writes=both shadow-background=off
# In both mode the origin got every write too.
same_files expected-both.img origin-both.img
