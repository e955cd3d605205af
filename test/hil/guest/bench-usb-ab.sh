# Guest script for bench/usb-ab.ts: `shuttle ingest usb:` of the same usb-mtp card by each build in
# HIL_BUILDS (space-separated main.js paths), in turns within one boot, the order alternating between rounds,
# each run on a fresh journal and destination (removed after it). Prints "HIL:ab BUILD ROUND START-MS" before
# and "HIL:ab-end BUILD ROUND END-MS rc=N" after each run; the session's open is in its log, its peak RSS
# and CPU time in /dest/logs/RUN.time.
. "$(dirname "$0")/common.sh"
hil_bench_setup
cd /run
for round in $(seq 1 "${HIL_ROUNDS:-3}"); do
  i=0
  order=""
  for main in $HIL_BUILDS; do
    i=$((i + 1))
    if [ $((round % 2)) -eq 1 ]; then order="$order $i:$main"; else order="$i:$main $order"; fi
  done
  for entry in $order; do
    i=${entry%%:*}
    main=${entry#*:}
    run="b$i-r$round"
    hil_event "ab $i $round $(date +%s%3N)"
    /usr/bin/time -f "%M %U %S" -o "/dest/logs/$run.time" "$HIL_NODE" "$main" --state "/dest/state-$run" ingest usb: --dest "/dest/lib-$run" --json > "/dest/logs/$run.json" 2> "/dest/logs/$run.log"
    rc=$?
    hil_event "ab-end $i $round $(date +%s%3N) rc=$rc"
    rm -rf "/dest/lib-$run" "/dest/state-$run"
    sync
  done
done
hil_poweroff
