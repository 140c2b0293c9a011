#!/usr/bin/env bash
# pip install that survives a flaky network: the CUDA build of torch pulls about 3 GB of wheels from PyPI, and a
# dropped connection must not fail the whole setup. pip resumes a broken download itself; if it still gives up, the
# whole install is retried after a longer pause each time. Usage: pip-install.sh PIP ARGS...
set -uo pipefail
pip="$1"; shift
attempts="${PIP_INSTALL_ATTEMPTS:-4}"; pause_s="${PIP_INSTALL_PAUSE_S:-60}"
for attempt in $(seq 1 "$attempts"); do
  "$pip" install --retries 10 --timeout 60 --resume-retries 20 "$@" && exit 0
  status=$?
  [ "$attempt" -lt "$attempts" ] || break
  pause=$((pause_s * attempt))
  echo "pip-install: attempt $attempt of $attempts failed (exit $status); retrying in ${pause} s" >&2
  sleep "$pause"
done
echo "pip-install: giving up after $attempts attempts: pip install $* (check the network or the package index)" >&2
exit "$status"
