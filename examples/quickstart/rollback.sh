#!/bin/sh
# Rolls the demo service back to its previous release.
#
# rollguard runs this (no shell in between, see [action rollback]) when rule `api`
# enters critical or failure, with the facts in the environment:
#   ROLLGUARD_RULE ROLLGUARD_GRADE ROLLGUARD_PREVIOUS_GRADE ROLLGUARD_REASON
#   ROLLGUARD_ACTION ROLLGUARD_DRY_RUN
# Exit 0 means success; anything else is journaled as failed. Output goes to the log.
#
# A real one would call the deploy tool, e.g. `deployctl rollback api`. The demo
# service reads its running release from a file, so rolling back is switching that
# file to the previous release, atomically.
set -eu

releases="${DEMO_RELEASE_DIR:-$(dirname "$0")/state/releases}"
current=$(cat "$releases/current")
previous=$(cat "$releases/previous")

echo "rollback.sh: rule ${ROLLGUARD_RULE:-?} went ${ROLLGUARD_PREVIOUS_GRADE:-?} -> ${ROLLGUARD_GRADE:-?}: ${ROLLGUARD_REASON:-}"
if [ "$current" = "$previous" ]; then
  echo "rollback.sh: $current has no previous release to go back to" >&2
  exit 1
fi
printf '%s\n' "$previous" > "$releases/current.tmp"
mv "$releases/current.tmp" "$releases/current"
echo "rollback.sh: rolled back $current -> $previous"
