#!/usr/bin/env bash
# Start the demo target, inspect it with heapscope, stop it. Usage: demo.sh HEAPSCOPE DEMO_TARGET
set -euo pipefail
hs=$1; target=$2
fifo=$(mktemp -u); mkfifo "$fifo"
"$target" < "$fifo" > "$fifo.pid" &
tpid=$!
exec 3>"$fifo"            # keeps the target's stdin open until we close it
trap 'exec 3>&-; wait $tpid 2>/dev/null; rm -f "$fifo" "$fifo.pid"' EXIT
for _ in $(seq 100); do [ -s "$fifo.pid" ] && break; sleep 0.05; done
echo "# How big is the heap, and how much of it is free? (per arena; the pause is printed)"
echo "\$ heapscope stat $tpid"
"$hs" stat "$tpid"
echo
echo "# Every chunk: address, size, state (in use, or the free list holding it), type and owner"
echo "\$ heapscope chunks $tpid --limit 20"
"$hs" chunks "$tpid" --limit 20
echo
echo "# What the memory holds, by type: the 2000 cached records are declared struct record; the"
echo "# leaked ones no pointer reaches are typed by resemblance to them"
echo "\$ heapscope types $tpid"
"$hs" types "$tpid"
echo
echo "# What leaked: the 501 records the workers dropped, typed struct record (resembles)"
echo "\$ heapscope leaks $tpid --limit 3"
"$hs" leaks "$tpid" --limit 3
echo
snaps=$(mktemp -d)
echo "# Snapshots now and later, and a watch in between: what grew?"
echo "\$ heapscope snapshot $tpid -o a.snap; heapscope watch $tpid --interval 200ms --count 3; heapscope snapshot $tpid -o b.snap"
"$hs" snapshot "$tpid" -o "$snaps/a.snap"
"$hs" watch "$tpid" --interval 200ms --count 3
"$hs" snapshot "$tpid" -o "$snaps/b.snap"
echo
echo "# What changed between the snapshots, by type and cause (the demo is idle: nothing)"
echo "\$ heapscope diff a.snap b.snap --limit 5"
"$hs" diff "$snaps/a.snap" "$snaps/b.snap" --limit 5
rm -rf "$snaps"
echo
# main's run-time address: its file address plus the load base (a PIE's first mapping).
base=$(awk -v t="$(readlink -f "$target")" '$6 == t { split($1, a, "-"); print a[1]; exit }' /proc/$tpid/maps)
off=$(nm "$target" | awk '$3 == "main" { print $1 }')
addr=$(printf '0x%x' $((0x$base + 0x$off + 0x10)))
echo "# An address from a log, named: function, file and line"
echo "\$ heapscope sym --pid $tpid $addr"
"$hs" sym --pid "$tpid" "$addr"
