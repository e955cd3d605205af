# Guest script for bench/startup-usb.ts: Shuttle's start-up until the camera session is open, for the
# builds in HIL_BUILDS (space-separated main.js paths) taken in turns, each run on a fresh journal as a box's
# first ingest. A first round that is not counted reads every build's files once (the first process after
# boot pays for reading node and them over the guest's 9p), and the order alternates between rounds.
# Prints "HIL:startup BUILD ROUND START-MS" before each run; the session's time is in its log, the run's
# CPU time in /dest/logs/RUN.time.
. "$(dirname "$0")/common.sh"
hil_bench_setup
cd /run
for round in $(seq 0 "${HIL_ROUNDS:-3}"); do
  t0=$(date +%s%3N); "$HIL_NODE" -e 0; t1=$(date +%s%3N)
  hil_event "node-startup $round $((t1 - t0))"
  i=0
  order=""
  for main in $HIL_BUILDS; do
    i=$((i + 1))
    if [ $((round % 2)) -eq 0 ]; then order="$order $i:$main"; else order="$i:$main $order"; fi
  done
  for entry in $order; do
    i=${entry%%:*}
    main=${entry#*:}
    run="b$i-r$round"
    [ "${HIL_CPU_PROF:-}" = 1 ] && export NODE_OPTIONS="--cpu-prof --cpu-prof-dir=/dest/logs/prof-$run"
    hil_event "startup $i $round $(date +%s%3N)"
    # The CPU time of the whole run (the card holds one small file, so it is mostly start-up): less
    # disturbed than the clock by other work on the machine that runs the guest.
    /usr/bin/time -f "%U %S" -o "/dest/logs/$run.time" "$HIL_NODE" "$main" --state "/dest/state-$run" ingest usb: --dest "/dest/lib-$run" --json > "/dest/logs/$run.json" 2> "/dest/logs/$run.log"
    hil_event "result $i $round rc=$?"
  done
done
hil_poweroff
