# Guest script for bench/usb.ts: the same usb-mtp camera downloaded by gphoto2 --get-all-files, then
# read by a bare loop over Shuttle's USB transport (bench/usb-bare-loop.ts, run again if it crashes), then ingested by Shuttle, each timed by the guest's clock. Prints "HIL:time NAME SECONDS rc=N" lines.
. "$(dirname "$0")/common.sh"
hil_bench_setup
up() { cut -d' ' -f1 /proc/uptime; }
took() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

t0=$(up); "$HIL_NODE" -e 0; t1=$(up)
hil_event "time node-startup $(took "$t0" "$t1") rc=0"

mkdir -p /dest/gphoto && cd /dest/gphoto || hil_fail "cd /dest/gphoto"
t0=$(up)
gphoto2 --quiet --get-all-files --filename '%F/%f.%C' > /dest/logs/gphoto2.log 2>&1
rc=$?
sync
t1=$(up)
hil_event "time gphoto2 $(took "$t0" "$t1") rc=$rc"
hil_event "count gphoto2 $(find /dest/gphoto -type f | wc -l)"

# The bus limit: a bare read loop over Shuttle's own USB transport that lists and reads every object and
# keeps nothing. A run that crashes is run again (at most twice more) and reported, so that a ratio against
# it is there in every benchmark; the time is the successful run's.
bench=$(dirname "$0")/../../../bench/usb-bare-loop.ts
tries=0
failures=""
while :; do
  t0=$(up)
  # It imports the project's TypeScript codec and transport, which need more than type stripping.
  "$HIL_NODE" --experimental-transform-types "$bench" > /dest/logs/bare-loop.txt 2>&1
  rc=$?
  t1=$(up)
  tries=$((tries + 1))
  [ "$rc" -eq 0 ] && break
  cp /dest/logs/bare-loop.txt "/dest/logs/bare-loop-failed-$tries.txt"
  failures="$failures $rc"
  [ "$tries" -ge 3 ] && break
done
hil_event "bare-loop-retries $((tries - 1)) exits${failures:- none}"
hil_event "time bare-loop $(took "$t0" "$t1") rc=$rc"
hil_event "$(tail -n 1 /dest/logs/bare-loop.txt)"
# What this guest's CPU hashes and copies per second, in a process of its own (see bench/cpu-rates.ts for
# why, and for the flag): it used to follow the loop in the same process, where a V8 crash in it failed
# the loop's run.
"$HIL_NODE" --no-wasm-dynamic-tiering "$(dirname "$0")/../../../bench/cpu-rates.ts" > /dest/logs/cpu-rates.txt 2>&1
hil_event "$(grep '^cpu-rates' /dest/logs/cpu-rates.txt || echo "cpu-rates failed, see cpu-rates.txt")"

cd /run
# HIL_CPU_PROF=1 (USB_BENCH_CPU_PROF on the host): a V8 CPU profile of Shuttle next to its logs.
[ "${HIL_CPU_PROF:-}" = 1 ] && export NODE_OPTIONS="--cpu-prof --cpu-prof-dir=/dest/logs" SHUTTLE_LOG_LEVEL=debug
hil_event "clock shuttle-start $(date +%s%3N)"
t0=$(up)
# hil_shuttle's run under time(1): peak RSS (KiB) and CPU seconds (user, system), worker threads included.
# HIL_PERF=1 (USB_BENCH_PERF on the host): the whole guest sampled by the kernel's clock while Shuttle runs
# (TCG has no hardware counters), kernel and user alike, reported in the guest where its symbols are.
perf=""
[ "${HIL_PERF:-}" = 1 ] && perf="perf record -q -e cpu-clock -F 250 -a -g -o /dest/logs/perf.data --"
/usr/bin/time -o /dest/logs/shuttle-time.txt -f "%M %U %S" $perf "$HIL_NODE" "$HIL_SHUTTLE" --state /dest/state ingest usb: --dest /dest/lib --json > /dest/logs/ingest.json 2> /dest/logs/ingest.log
rc=$?
t1=$(up)
if [ -n "$perf" ]; then
  # This boot's kernel symbols (KASLR moves them every boot): perf on the host resolves the samples with them
  # (`perf report --kallsyms kallsyms --time A%-B%` for the copy phase alone).
  cat /proc/kallsyms > /dest/logs/kallsyms
  perf report -i /dest/logs/perf.data --stdio --no-children --sort comm,dso,sym -g none --percent-limit 0.3 > /dest/logs/perf.txt 2>&1
  perf report -i /dest/logs/perf.data --stdio --no-children --sort comm,dso -g none > /dest/logs/perf-dso.txt 2>&1
  perf report -i /dest/logs/perf.data --stdio --no-children --sort sym -g caller,0.5,callee --percent-limit 2 > /dest/logs/perf-callers.txt 2>&1
fi
hil_event "result ingest rc=$rc"
hil_event "shuttle-usage $(cat /dest/logs/shuttle-time.txt)"
hil_event "time shuttle $(took "$t0" "$t1") rc=$rc"
hil_poweroff
