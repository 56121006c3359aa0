# nbdshadow: what scripts/demo and scripts/check share: install missing
# Debian packages, bootstrap autotools, configure and build out of tree.
# Sourced, not run.

set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Everything the build, the tests, the benchmarks and the demo need.
PACKAGES=(
    gcc make pkg-config autoconf automake libtool perl
    nbdkit nbdkit-plugin-dev libnbd-dev libnbd-bin libev-dev check
    qemu-utils fio clang libclang-rt-14-dev python3 gnuplot-nox fuse3 e2fsprogs
    iproute2
)

say ()
{
    printf '\033[1m==> %s\033[0m\n' "$*"
}

missing_packages ()
{
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
            grep -q "install ok installed" || echo "$p"
    done
}

install_packages ()
{
    local missing sudo=
    mapfile -t missing < <(missing_packages)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null ||
            { echo "missing packages: ${missing[*]}: run as root or install sudo" >&2; exit 1; }
        sudo=sudo
    fi
    say "installing ${missing[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
}

bootstrap ()
{
    if [ ! -x "$top/configure" ] || [ "$top/configure.ac" -nt "$top/configure" ]; then
        say "autoreconf"
        (cd "$top" && autoreconf -fi)
    fi
}

# build DIR CONFIGURE-ARGS...: configure (once) and build in $top/DIR.
build ()
{
    local dir=$top/$1; shift
    mkdir -p "$dir"
    if [ ! -f "$dir/config.status" ] ||
       [ "$(sed -n 's/^ac_cs_config=//p' "$dir/config.status")" != "'$*'" ]; then
        say "configure $* (in $dir)"
        (cd "$dir" && "$top/configure" "$@" >configure.out) ||
            { cat "$dir/configure.out" >&2; exit 1; }
    fi
    say "build in $dir"
    make -C "$dir" -j"$(nproc)" >"$dir/build.out" 2>&1 ||
        { tail -50 "$dir/build.out" >&2; exit 1; }
}
