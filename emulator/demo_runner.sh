#!/bin/bash
# Demo runner shipped with the E2B emulator: appends a progress line to $RUNNER_LOG
# (default ~/runner.log) every $RUNNER_INTERVAL seconds (default 2), and echoes it to stdout.
log="${RUNNER_LOG:-$HOME/runner.log}"
interval="${RUNNER_INTERVAL:-2}"
step=0
echo "$(date -u +%FT%TZ) runner started (pid $$, sandbox ${E2B_SANDBOX_ID:-?})" | tee -a "$log"
trap 'echo "$(date -u +%FT%TZ) runner stopping" | tee -a "$log"; exit 0' TERM INT
while :; do
  step=$((step + 1))
  echo "$(date -u +%FT%TZ) runner progress: step $step" | tee -a "$log"
  sleep "$interval" &
  wait $!
done
