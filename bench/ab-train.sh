#!/bin/sh
# $1: prism binary; $2: experiment; trains in a fresh folder.
d=$(mktemp -d /tmp/ab-XXXXXX)
"$1" train --config "$2" --set run.dir=$d/run >/dev/null 2>&1
rc=$?
rm -rf $d
exit $rc
