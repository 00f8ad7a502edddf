#!/usr/bin/env bash
# Build, once, the Debian root NAME (a suite: bullseye, trixie, sid; or experimental: sid with
# experimental's glibc) that the glibc matrix tests run
# their targets in, under $HEAPSCOPE_ROOTS (default /var/cache/heapscope/roots, outside the
# checkout). Each root has gcc, libc6-dev, libc6-dbg and gdb. The mirror is the one this machine's
# apt uses. A root that exists is left as it is; a failure says why and exits 1.
set -euo pipefail
name=$1
roots=${HEAPSCOPE_ROOTS:-/var/cache/heapscope/roots}
dir=$roots/$name
ready() { [ -x "$1/usr/bin/gcc" ] && [ -d "$1/usr/lib/debug/.build-id" ] && [ -e "$1/usr/include/stdio.h" ]; }
ready "$dir" && exit 0
command -v debootstrap >/dev/null || { echo "make-root: debootstrap is not installed (make deps installs it)" >&2; exit 1; }
mirror=$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true) | awk '/^URIs:/ { print $2; exit }')
[ -n "$mirror" ] || mirror=$( (cat /etc/apt/sources.list 2>/dev/null || true) | awk '/^deb / { print $2; exit }')
[ -n "$mirror" ] || { echo "make-root: no Debian mirror in /etc/apt/sources.list*" >&2; exit 1; }
mkdir -p "$roots"
rm -rf "$dir.tmp"
log=$roots/$name.log
echo "make-root: building the Debian $name root in $dir (a few minutes; log: $log)"
# bullseye's debootstrap ends with an error from one package (libsource-highlight4v5) that
# nothing here needs: the root is judged by the files below, not by the exit code.
suite=$name
[ "$name" = experimental ] && suite=sid
debootstrap --variant=minbase --include=gcc,libc6-dev,libc6-dbg,gdb "$suite" "$dir.tmp" "$mirror" >"$log" 2>&1 || true
if [ "$name" = experimental ] && ready "$dir.tmp"; then
    # sid, with glibc from experimental. The registry's Release files may be past Valid-Until.
    echo "deb $mirror experimental main" > "$dir.tmp/etc/apt/sources.list.d/experimental.list"
    { chroot "$dir.tmp" apt-get -o Acquire::Check-Valid-Until=false update &&
      chroot "$dir.tmp" env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false install -y -t experimental libc6 libc6-dev libc6-dbg libc-bin; } >>"$log" 2>&1 ||
        { echo "make-root: could not install experimental's glibc in $dir.tmp; the end of $log:" >&2; tail -5 "$log" >&2; exit 1; }
fi
if ! ready "$dir.tmp"; then
    echo "make-root: could not build the Debian $name root from $mirror (no gcc, libc6-dev or libc6-dbg in it); the end of $log:" >&2
    tail -5 "$log" >&2
    exit 1
fi
mv "$dir.tmp" "$dir"
