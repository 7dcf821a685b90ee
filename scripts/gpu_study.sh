#!/usr/bin/env bash
# The whole study on one machine, without papermill or internet: every finding's results are
# computed into the cache by the library's CLI (`python -m transferlab run <finding> --profile P`),
# then the benchmarks run; the wall time of each step is printed and kept in timings.txt.
# The notebooks later render the cached results on any machine (`make notebooks PROFILE=P`).
#
#   scripts/gpu_study.sh            the gpu profile (one H100: the target is under 10 minutes)
#   scripts/gpu_study.sh ci         a CPU smoke test of the same steps (benchmarks in --quick mode)
#
# Results go to $OUT when it is set (a device machine's return folder), else .cache/study-<profile>/:
# timings.txt, logs/ (one log per step; packed as logs.tgz under $OUT, which takes few files),
# results.tgz (the cache's findings/ and zoo metadata, no weights) and benchmarks.tgz (the JSON).
# The gpu profile also writes its benchmark JSON into benchmarks/results/<device>/ and refreshes
# book/performance_table.md. To render: `tar -xzf results.tgz -C ~/.cache/transferlab`, then
# `make notebooks book PROFILE=gpu`; a zoo run copied without weights counts as finished, so
# nothing is retrained (only a result missing from the copy would need the weights).
set -euo pipefail

profile="${1:-gpu}"
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
dest="${OUT:-.cache/study-$profile}"
mkdir -p "$dest/logs"
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1
cache="$("$py" -c 'from transferlab.cache import cache_root; print(cache_root())')"

if [ "$profile" = ci ]; then
  bench_args=(--quick --out "$dest/benchmarks")
  bench_dir="$dest/benchmarks"
else
  bench_args=()
  bench_dir=benchmarks/results
fi

: > "$dest/timings.txt"
total_start=$(date +%s.%N)
seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# step NAME CMD...: run CMD with its output in $dest/logs/NAME.log, print and record its wall time.
step() {
  local name=$1; shift
  local start rc=0 status=ok
  start=$(date +%s.%N)
  "$@" > "$dest/logs/$name.log" 2>&1 || rc=$?
  [ $rc = 0 ] || status="FAILED (rc $rc, see $dest/logs/$name.log)"
  printf '%-16s %8s s  %s\n' "$name" "$(seconds_since "$start")" "$status" | tee -a "$dest/timings.txt"
  [ $rc = 0 ] || tail -n 20 "$dest/logs/$name.log"
  return $rc
}

echo "study: profile $profile, cache $cache, results in $dest"
findings=$("$py" -c 'from transferlab.findings import FINDINGS; print(" ".join(FINDINGS))')
failed=0
for finding in $findings; do
  step "$finding" "$py" -m transferlab run "$finding" --profile "$profile" || failed=1
done
step benchmarks "$py" -m benchmarks "${bench_args[@]}" || failed=1
printf '%-16s %8s s\n' total "$(seconds_since "$total_start")" | tee -a "$dest/timings.txt"

tar -czf "$dest/results.tgz" -C "$cache" --exclude='*.safetensors' --exclude='*.pt' \
  $(cd "$cache" && ls -d findings zoo 2>/dev/null)
tar -czf "$dest/benchmarks.tgz" -C "$bench_dir" .
if [ -n "${OUT:-}" ]; then
  tar -czf "$dest/logs.tgz" -C "$dest" logs && rm -r "$dest/logs"
fi
exit $failed
