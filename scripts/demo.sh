#!/usr/bin/env bash
# The whole job on an embedded default of everything: a camera (Shuttle's PTP/IP simulator serving a
# sample card), a local library, and a local S3 server (s3rver) standing in for the cloud. The daemon
# ingests the camera (every copy read back and verified, journaled, with an ASC MHL manifest), uploads
# each file and verifies it in the bucket, and shows it all on its dashboard. Everything stays up until
# Ctrl-C, which stops the three processes cleanly.
#
#   scripts/demo.sh [--once] [--listen HOST:PORT] [--timeout SECONDS] [--no-build] [DIR]
#
# --once       wait until the camera's files are all verified and uploaded, check the library and the
#              bucket, stop everything and exit (0 when all is well): what the tests run.
# --listen     where the daemon's HTTP API and dashboard listen (default 127.0.0.1:8650; port 0: any free).
# --timeout    give up, loudly, when the job has not finished in this many seconds (default 120).
# --no-build   skip `npm ci` and the build (the tests have built dist/ already).
# DIR          where the demo lives: card, library, bucket, journal, config, logs (default .tmp/demo).
set -euo pipefail
cd "$(dirname "$0")/.."

once=0 build=1 listen=127.0.0.1:8650 timeout=120 demo=.tmp/demo
while (($#)); do
  case $1 in
    --once) once=1 ;;
    --no-build) build=0 ;;
    --listen) listen=${2:?--listen needs HOST:PORT}; shift ;;
    --timeout) timeout=${2:?--timeout needs seconds}; shift ;;
    -h | --help) sed -n '2,15s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "demo: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) demo=$1 ;;
  esac
  shift
done

if ((build)); then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
  fi
  # Under a second: the program always matches the sources.
  npm run --silent build
fi

# The project's Node runtime, run directly: `npx shuttle` on an older system node would re-execute
# itself as a child, and the pids below must be the processes themselves.
node=$PWD/node_modules/.bin/node
shuttle() { "$node" bin/shuttle.js "$@"; }

fail() {
  echo "demo: $*" >&2
  exit 1
}
[[ $timeout =~ ^[1-9][0-9]*$ ]] || fail "--timeout takes a whole number of seconds, not $timeout"
deadline=$((SECONDS + timeout))

mkdir -p "$demo"
demo=$(realpath "$demo")
case $demo in *[\"\\]*) fail "the demo folder's path must not contain \" or \\ (it goes into a TOML file)" ;; esac
rm -rf "${demo:?}"/{card,.shots,pool,library,s3,state,run,logs,shuttle.toml,s3-credentials}
mkdir -p "$demo/logs"
mkdir -m 700 "$demo/run"
logs=$demo/logs

# Each process runs in a session of its own, so that Ctrl-C reaches it once, from stop() below, and not
# also straight from the terminal (a second signal makes the daemon exit without its clean stop).
names=() pids=()
start() { # NAME COMMAND...: starts COMMAND in the background, stdout and stderr to logs/NAME.log
  local name=$1
  shift
  setsid "$@" >"$logs/$name.log" 2>&1 &
  names+=("$name") pids+=($!)
}
stop() { # Stops what start() started, the last first: the daemon finishes its work before its peers go.
  local i status ok=0
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    status=0
    wait "${pids[i]}" || status=$?
    # The daemon and the camera stop cleanly on SIGTERM (exit 0); s3rver simply dies of it (128 + 15).
    case ${names[i]}:$status in
      *:0 | s3:143) ;;
      *)
        echo "demo: ${names[i]} exited with status $status (see $logs/${names[i]}.log)" >&2
        ok=1
        ;;
    esac
  done
  pids=() names=()
  return $ok
}
trap 'stop || true' EXIT
trap 'echo "demo: stopping the daemon, the camera and s3rver" >&2; exit 130' INT TERM HUP

# Prints the first line of logs/NAME.log matching REGEX, once NAME has written it; fails if NAME ends
# first or the deadline passes.
await() { # NAME REGEX
  local name=$1 pid=${pids[-1]}
  until grep -m1 -E "$2" "$logs/$name.log"; do
    kill -0 "$pid" 2>/dev/null || fail "$name stopped: $(tail -n 5 "$logs/$name.log")"
    ((SECONDS < deadline)) || fail "$name did not start within ${timeout} s (see $logs/$name.log)"
    sleep 0.1
  done
}

echo "demo in $demo"
# A card as a camera writes it (JPEG+RAW pairs with EXIF, sidecars, two folders), and a few more
# JPEGs the simulated camera "shoots" when asked to (`shuttle tether ptpip:…`, then `shuttle capture`).
shuttle sample "$demo/card"
shuttle sample "$demo/.shots" --count 3 --seed 2 >/dev/null
mkdir "$demo/pool"
mv "$demo/.shots/DCIM/100CANON/"*.JPG "$demo/pool/"
rm -rf "$demo/.shots"

# The cloud: s3rver keeps a bucket in a folder. Its keys are fixed (S3RVER/S3RVER).
bucket=shuttle-demo
start s3 "$node" node_modules/s3rver/bin/s3rver.js --directory "$demo/s3" --address 127.0.0.1 --port 0 --silent --configure-bucket "$bucket"
s3=http://$(await s3 'listening on' | sed 's/.* on //')
printf '[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n' >"$demo/s3-credentials"

# The camera: the sample card over PTP/IP, as a Wi-Fi camera serves it.
start camera "$node" bin/shuttle.js simulate-camera --dir "$demo/card" --pool "$demo/pool" --port 0
camera=$(await camera '^\{"host"' | sed -E 's/.*"host":"([^"]*)","port":([0-9]+).*/\1:\2/')

cat >"$demo/shuttle.toml" <<EOF
# Written by scripts/demo.sh: the daemon of the demo. See config/shuttle.example.toml for every key.
station = "demo"
state_dir = "$demo/state"

[[destinations]]
path = "$demo/library"
name = "library"

[upload]
target = "s3://$bucket/shots"
endpoint = "$s3"
region = "us-east-1"
credentials_file = "$demo/s3-credentials"
# s3rver's ETag is the MD5 of the bytes it stored, as MinIO's is for an object sent in one request (every
# file of the demo is), so Shuttle checks each upload against its own MD5 of the file too.
provider = "minio"

[daemon]
control_socket = "$demo/run/control.sock"
# Only the simulator: this daemon connects to no other camera, USB or network.
usb_cameras = false
network_cameras = ["$camera"]

[api]
listen = "$listen"
EOF
start daemon "$node" bin/shuttle.js --config "$demo/shuttle.toml" run
api=$(await daemon '"msg":"daemon started"' | sed -E 's/.*"api":"([^"]*)".*/\1/')
[[ $api == http* ]] || fail "the daemon has no HTTP API (see $logs/daemon.log)"

# A network camera the config lists is ingested on request (one it discovers on the network, at once).
job=$(shuttle --config "$demo/shuttle.toml" request ingest --json "ptpip:$camera" | sed -E 's/^\{"job":\{"id":([0-9]+).*/\1/')
echo "dashboard: $api/   (ingesting the camera at $camera: job $job)"

# Waits for the job and the uploads through the daemon's API, prints what happened, and checks every
# object in the bucket against the library by SHA-256, asking s3rver itself.
"$node" --import ./test/support/ts-resolve-hooks.mjs scripts/demo-report.ts --api "$api" --job "$job" --s3 "$s3" --bucket "$bucket" --timeout $((deadline - SECONDS))

if ((once)); then
  stop || fail "not every process stopped cleanly"
  shuttle --log-level warn verify "$demo/library"
  echo "demo: done"
  exit 0
fi
echo "Everything keeps running: the dashboard at $api/, \`npx shuttle -c $demo/shuttle.toml status\`. Ctrl-C stops it all."
wait -n || true
fail "a process of the demo stopped by itself (see $logs/)"
