#!/usr/bin/env bash
# qemu-io writes patterns and zeroes at unaligned offsets and lengths,
# across block boundaries, onto absent and resident blocks, sub-block and
# multi-block, up to a partial last block.  The same commands applied to
# a reference file must give the same image: read through the filter
# (qemu-img compare and cmp), and read from the shadow directly for the
# blocks the writes touched.  Run for block sizes 4K and 64K.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires qemu-img --version
requires nbdcopy --version

size=$((2*1024*1024 + 3584))     # not a multiple of either block size

# The writes: "qemu-io command|offset length" (offset/length for the
# direct shadow check).
writes=(
    "write -P 0x11 1000 5000|1000 5000"
    "write -P 0x22 65000 1000|65000 1000"
    "write -P 0x33 70000 300000|70000 300000"
    "write -P 0x44 524288 65536|524288 65536"
    "write -P 0x55 530000 10|530000 10"
    "write -P 0x56 589823 2|589823 2"
    "write -z 600001 70000|600001 70000"
    "write -z 1048576 131072|1048576 131072"
    "write -P 0x66 $((size - 52)) 52|$((size - 52)) 52"
    "write -P 0x77 $((size - 70000)) 4000|$((size - 70000)) 4000"
    "write -P 0x88 1500000 1|1500000 1"
    "write -P 0x99 1900000 100|1900000 100"
    "write -z 1950000 50|1950000 50"
    "write -P 0xaa 1703936 4096|1703936 4096"
)
# Blocks made resident by reads before the writes.
reads=("read 0 64k" "read 512k 100k" "read 1400000 200000")

run_case ()
{
    local bs=$1 bsbytes=$2 w cmd range off len first last
    echo "=== shadow-block-size=$bs"
    rm -f origin.img ref.img shadow-direct.img through.img
    random_file origin.img $size
    cp origin.img ref.img

    start_nbdkit shadow-$bs memory $size
    start_filter proxy-$bs file origin.img \
        shadow="$(uri $TESTDIR/shadow-$bs.sock)" shadow-block-size=$bs \
        shadow-background=off
    local proxy shadow
    proxy=$(uri $TESTDIR/proxy-$bs.sock)
    shadow=$(uri $TESTDIR/shadow-$bs.sock)

    for cmd in "${reads[@]}"; do
        qemu-io -f raw -r "$proxy" -c "$cmd" >/dev/null
    done
    sleep 0.5
    echo "after reads: $(status proxy-$bs)"

    for w in "${writes[@]}"; do
        cmd=${w%%|*}
        qemu-io -f raw "$proxy" -c "$cmd" >/dev/null || fail "$cmd through the filter"
        qemu-io -f raw ref.img -c "$cmd" >/dev/null || fail "$cmd on the reference"
    done
    qemu-io -f raw "$proxy" -c flush >/dev/null

    # Through the filter.
    qemu-img compare -f raw -F raw "$proxy" ref.img ||
        fail "qemu-img compare: filter differs from the reference (bs $bs)"
    nbdcopy "$proxy" through.img
    same_files ref.img through.img
    # The origin was never written (shadow-writes=shadow).
    qemu-io -f raw -r origin.img -c "read -P 0x11 1000 5000" 2>&1 |
        grep -q "Pattern verification failed" ||
        fail "the origin was written to"

    # Every block a write touched is on the shadow with the right bytes.
    nbdcopy "$shadow" shadow-direct.img
    for w in "${writes[@]}"; do
        range=${w#*|}
        off=${range% *}; len=${range#* }
        first=$(( off / bsbytes * bsbytes ))
        last=$(( (off + len + bsbytes - 1) / bsbytes * bsbytes ))
        [ $last -gt $size ] && last=$size
        cmp -n $((last - first)) -i $first:$first shadow-direct.img ref.img ||
            fail "shadow differs from the reference in blocks $first..$last (bs $bs)"
    done

    # After the full read everything is resident: the shadow is the image.
    wait_synced proxy-$bs 30
    nbdcopy "$shadow" shadow-direct.img
    same_files ref.img shadow-direct.img
    stop_filter proxy-$bs
}

run_case 4K 4096
run_case 64K 65536
