#!/usr/bin/env bash
# Extents report what the client would read: the origin's allocation for
# absent blocks, the shadow's for resident ones.  Before any copy the map
# through the filter equals the origin's; after copies, writes, zeroes and
# trims, the map is contiguous and every range it calls zero reads as
# zeroes, and a sparse-aware nbdcopy still copies the right bytes.
source "${abs_top_srcdir}/tests/functions.sh"
requires nbdinfo --version
requires qemu-io --version
requires nbdcopy --version

size=$((8 * 1024 * 1024))
truncate -s $size origin.img
# Data islands in a sparse file.
for off in 0 1 3 5 6 7; do
    dd if=/dev/urandom of=origin.img bs=512K count=1 seek=$((off * 2)) \
        conv=notrunc status=none
done
cp origin.img ref.img

start_nbdkit shadow memory $size
start_filter proxy file origin.img shadow="$(uri $TESTDIR/shadow.sock)" \
    shadow-block-size=64K shadow-background=off
proxy=$(uri $TESTDIR/proxy.sock)

nbdinfo --map "$(uri $TESTDIR/proxy.sock)" > map-proxy-0.txt
LD_PRELOAD= nbdkit -U - file origin.img --run 'nbdinfo --map "$uri"' > map-origin.txt
diff -u map-origin.txt map-proxy-0.txt || fail "map before any copy differs"

# Make a mix of resident, written, zeroed, trimmed and absent blocks.
qemu-io -f raw -r "$proxy" -c "read 0 2M" >/dev/null
cmds=("write -P 0x5a 3000000 70000" "write -z 6291456 262144"
      "write -z 100000 5000" "discard 7340032 131072")
for c in "${cmds[@]}"; do
    qemu-io -f raw "$proxy" -c "$c" >/dev/null
done
for c in "${cmds[@]:0:3}"; do
    qemu-io -f raw ref.img -c "$c" >/dev/null
done
sleep 0.5

check_map ()
{
    nbdinfo --map "$proxy" > map.txt
    # Contiguous from 0 to the size.
    awk -v size=$size '
        { if ($1 != next_off) { print "gap at " $1; bad = 1 } next_off = $1 + $2 }
        END { if (next_off != size) { print "ends at " next_off; bad = 1 } exit bad }
    ' map.txt || { cat map.txt; fail "map not contiguous"; }
    # Every zero extent reads as zeroes (type bit 2).
    while read -r off len type rest; do
        if [ $(( type & 2 )) -ne 0 ]; then
            qemu-io -f raw -r "$proxy" -c "read -P 0 $off $len" |
                grep -q "Pattern verification failed" &&
                fail "extent $off+$len reported zero but is not"
        fi
    done < map.txt
    echo "map ok: $(wc -l < map.txt) extents"
}
check_map

# The trimmed range is unspecified, so compare around it.
nbdcopy "$proxy" copy.img
cmp -n 7340032 copy.img ref.img || fail "data before the trimmed range differs"
cmp -i $((7340032 + 131072)) copy.img ref.img || fail "data after the trimmed range differs"

# nbdcopy read the data extents and check_map read the zero ones, so
# every block is resident now: the map comes from the shadow alone.
# Except that a copy on read is skipped while another copy (a prefetch)
# holds its blocks, and with the background sweep off nothing copies
# them later: read again until every block is resident (a full make
# check once left 2 of 128 blocks absent here).
for (( i=0; i<5; i++ )); do
    case "$(status proxy)" in "shadow: synced"*) break ;; esac
    qemu-io -f raw -r "$proxy" -c "read 0 $size" >/dev/null
    sleep 0.5
done
wait_synced proxy 30
check_map
