#!/bin/sh
# The `shuttle` command of an installed tree (bin/shuttle in the artifact that scripts/build-dist.sh
# makes; /usr/local/bin/shuttle links here): runs Shuttle on the Node runtime it ships with
# (node_modules/node), so the machine's own node, old or missing, does not matter.
root=$(dirname "$(dirname "$(readlink -f "$0")")")
exec "$root/node_modules/node/bin/node" "$root/bin/shuttle.js" "$@"
