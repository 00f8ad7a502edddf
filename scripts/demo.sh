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
echo "\$ heapscope stat $tpid"
"$hs" stat "$tpid"
echo
echo "\$ heapscope chunks $tpid --limit 20"
"$hs" chunks "$tpid" --limit 20
echo
echo "\$ heapscope types $tpid"
"$hs" types "$tpid"
echo
echo "\$ heapscope leaks $tpid --limit 3"
"$hs" leaks "$tpid" --limit 3
echo
snaps=$(mktemp -d)
echo "\$ heapscope snapshot $tpid -o a.snap; heapscope watch $tpid --interval 200ms --count 3; heapscope snapshot $tpid -o b.snap"
"$hs" snapshot "$tpid" -o "$snaps/a.snap"
"$hs" watch "$tpid" --interval 200ms --count 3
"$hs" snapshot "$tpid" -o "$snaps/b.snap"
echo
echo "\$ heapscope diff a.snap b.snap --limit 5"
"$hs" diff "$snaps/a.snap" "$snaps/b.snap" --limit 5
rm -rf "$snaps"
echo
# main's run-time address: its file address plus the load base (a PIE's first mapping).
base=$(awk -v t="$(readlink -f "$target")" '$6 == t { split($1, a, "-"); print a[1]; exit }' /proc/$tpid/maps)
off=$(nm "$target" | awk '$3 == "main" { print $1 }')
addr=$(printf '0x%x' $((0x$base + 0x$off + 0x10)))
echo "\$ heapscope sym --pid $tpid $addr"
"$hs" sym --pid "$tpid" "$addr"
