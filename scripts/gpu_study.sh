#!/usr/bin/env bash
# The whole study on one machine, without papermill or internet: the benchmarks run, then every
# finding's results are computed into the cache by the library's CLI, every seed of every finding
# as its own process side by side (`python -m transferlab run <finding> --profile P --seed S`), then
# each finding's run of all seeds, which reads them; the wall time of each step is printed and kept
# in timings.txt.
# The notebooks later render the cached results on any machine (`make notebooks PROFILE=P`).
#
#   scripts/gpu_study.sh            the gpu profile (one H100: the target is under 10 minutes)
#   scripts/gpu_study.sh ci         a CPU smoke test of the same steps (benchmarks in --quick mode)
#   scripts/gpu_study.sh gpu --skip-benchmarks
#                                   without the benchmark suite before the study (its results came
#                                   back already); the measurements after the study still run
#   scripts/gpu_study.sh gpu --skip-benchmarks fe_vs_ft feature_reuse cross
#                                   only the findings named, without any benchmark
#
# Named findings split the study over device sessions that cannot finish it in one: three groups
# share no pretraining run, `invariance` (the ViT zoo), `lpft_ood` (its own zoo) and `fe_vs_ft
# feature_reuse cross` (the ResNet zoo; cross reads the other two's runs). A later session runs the
# groups whose results did not come back, with --skip-benchmarks once benchmarks.tgz came back;
# the returned results of both sessions unpack into one cache.
#
# On a lent GPU machine (device tool): first, here, `scripts/device_wheels.sh`; then one `run`
# with carry [".whl"] and the command `bash scripts/gpu_study.sh gpu` (timeout_s 600). If it is
# stopped at the limit, the same call again at once (machine still warm) resumes from its cache.
#
# Results go to $OUT when it is set (a device machine's return folder), else .cache/study-<profile>/:
# timings.txt, gpu-usage.csv (where nvidia-smi is: utilisation and memory each second of the study;
# `python -m benchmarks.study_timeline FOLDER` draws both on one time axis),
# logs/ (one log per step; packed as logs.tgz under $OUT, which takes few files),
# results.tgz.part00, 01, ... (the cache's findings/ and zoo metadata, no weights; `cat` them
# together), benchmarks.tgz (the JSON; from the first call only, when a second one resumes) and,
# after the study, benchmarks-compile.tgz (the same folder with the training benchmark compiled and
# benchmarks.profile_train's profile of the eager loop).
# The gpu profile also writes its benchmark JSON into benchmarks/results/<device>/ and refreshes
# book/performance_table.md. To render: `cat results.tgz.part* | tar -xzf - -C ~/.cache/transferlab`, then
# `make notebooks book PROFILE=gpu`; a zoo run copied without weights counts as finished, so
# nothing is retrained (only a result missing from the copy would need the weights).
set -euo pipefail

run_benchmarks=1
positional=()
for arg in "$@"; do
  case "$arg" in
    --skip-benchmarks) run_benchmarks=0 ;;
    -*) echo "error: The option '$arg' is not known; the only option is --skip-benchmarks." >&2; exit 2 ;;
    *) positional+=("$arg") ;;
  esac
done
profile="${positional[0]:-gpu}"
named=("${positional[@]:1}")
cd "$(dirname "$0")/.."
# On a lent GPU machine there is no .venv: its python3 (torch, scikit-image, ... already there)
# runs the library from src/, with the wheels scripts/device_wheels.sh put in .whl/ (mlxtend, and
# timm at its pin) ahead of its own packages.
if [ -x .venv/bin/python ]; then default_py=.venv/bin/python; else default_py=python3; fi
py="${PYTHON:-$default_py}"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:$PWD:${PYTHONPATH:-}"
# The profile and finding names, checked before anything runs (a one-line error, exit status 2);
# the findings to run, in book order: those named, else all.
# Each as "name:seeds", the number of seeds the profile gives it.
plan=$("$py" - "$profile" "${named[@]}" <<'PY'
import importlib
import sys
from transferlab.config import ParameterError, check_profile
from transferlab.findings import FINDINGS, check_finding
try:
    check_profile(sys.argv[1])
    named = {check_finding(name) for name in sys.argv[2:]}
except ParameterError as err:
    sys.exit(f"error: {err}")
print(" ".join(f"{name}:{importlib.import_module(module).config(sys.argv[1]).seeds}"
               for name, module in FINDINGS.items() if not named or name in named))
PY
) || exit 2
declare -A seeds_of=()
for entry in $plan; do seeds_of[${entry%:*}]=${entry#*:}; done
findings=$(for entry in $plan; do printf '%s ' "${entry%:*}"; done)
dest="${OUT:-.cache/study-$profile}"
mkdir -p "$dest/logs"
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1
# On a lent machine ($OUT set) the cache lives in the repo's ignored .cache/: the device tool keeps
# ignored files between calls while the machine stays warm, so a second call after one stopped
# at its time limit resumes (finished findings load, an interrupted pretraining continues).
if [ -n "${OUT:-}" ] && [ -z "${TRANSFERLAB_CACHE:-}" ]; then
  export TRANSFERLAB_CACHE="$PWD/.cache/transferlab-$profile"
fi
cache="$("$py" -c 'from transferlab.cache import cache_root; print(cache_root())')"

if [ "$profile" = ci ]; then
  bench_args=(--quick --out "$dest/benchmarks")
  bench_dir="$dest/benchmarks"
else
  bench_args=()
  bench_dir=benchmarks/results
fi

# timings.txt: each step's wall time and when it started ("at", seconds into this call), after a
# first line with the clock time those count from, in nvidia-smi's timestamp format, so that
# `python -m benchmarks.study_timeline` draws the steps and gpu-usage.csv on one time axis.
total_start=$(date +%s.%N)
echo "# started $(date -d "@$total_start" '+%Y/%m/%d %H:%M:%S.%3N')" > "$dest/timings.txt"
seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
offset() { awk -v a="$total_start" -v b="$1" 'BEGIN { printf "%.1f", b - a }'; }
# step NAME CMD...: run CMD with its output in $dest/logs/NAME.log, print and record its wall time.
step() {
  local name=$1; shift
  local start rc=0 status=ok
  start=$(date +%s.%N)
  "$@" > "$dest/logs/$name.log" 2>&1 || rc=$?
  [ $rc = 0 ] || status="FAILED (rc $rc, see $dest/logs/$name.log)"
  printf '%-16s %8s s  at %7s s  %s\n' "$name" "$(seconds_since "$start")" "$(offset "$start")" "$status" \
    | tee -a "$dest/timings.txt"
  [ $rc = 0 ] || tail -n 20 "$dest/logs/$name.log"
  return $rc
}

# What the chapters render from, without what only a recomputation reads: weights, optimizer
# states, features (their spectra are cached) and STIR inversions (their maps are cached; chapter
# 01 shows seed 0's pretrained ones). Parts of at most 15 MiB, the device tool's file limit.
# Packed every minute while the findings run and once at the end, so that a run stopped at the
# device's time limit still returns what it finished and how far each finding got (logs.tgz).
# Written beside the last pack and moved over it, so a stop during a pack leaves the last one.
pack() {
  local dirs tmp="$dest/.pack"
  rm -rf "$tmp" && mkdir -p "$tmp"
  if [ -n "${OUT:-}" ]; then tar -czf "$tmp/logs.tgz" -C "$dest" logs; fi
  dirs=$(cd "$cache" 2>/dev/null && ls -d findings zoo 2>/dev/null || true)
  if [ -n "$dirs" ]; then   # (tar refuses an empty archive: nothing computed yet)
    # shellcheck disable=SC2086  # the folder names are two plain words
    tar -czf - -C "$cache" --exclude='*.tmp' --exclude='*.safetensors' --exclude='*.pt' --exclude='*-features.npz' \
      --exclude='inv-ft-*.npz' --exclude='inv-pt-seed[1-9]*.npz' --exclude='inv-pt-ep*.npz' \
      $dirs | split -b 15M -d - "$tmp/results.tgz.part"
  fi
  rm -f "$dest"/results.tgz.part*
  if compgen -G "$tmp/*" > /dev/null; then mv "$tmp"/* "$dest"/; fi
  rmdir "$tmp"
}

echo "study: profile $profile, cache $cache, results in $dest"
failed=0
step info "$py" -m transferlab info || failed=1   # versions (the GPU image's timm and pandas), device
# The benchmarks first: a few minutes that measure what the study's speed claims rest on, returned
# (benchmarks.tgz) even when the study then stops at a device's time limit. A second call on the
# same lent machine, resuming the study, does not repeat them: the first call returned them.
bench_done="$cache/benchmarks-$profile.done"
if [ $run_benchmarks = 0 ]; then
  echo "benchmarks: skipped (--skip-benchmarks)"
elif [ -n "${OUT:-}" ] && [ -f "$bench_done" ]; then
  echo "benchmarks: measured and returned by an earlier call on this machine"
else
  step benchmarks "$py" -m benchmarks "${bench_args[@]}" || failed=1   # a failed one is logged, the rest run
  tar -czf "$dest/benchmarks.tgz" -C "$bench_dir" .
  if [ -n "${OUT:-}" ]; then mkdir -p "$cache" && touch "$bench_done"; fi
fi
# Every seed of every finding as its own process, all at once; then each finding's run of all seeds,
# which reads their units and computes what is not per seed. Small runs are launch-bound: each
# process keeps the GPU busy only between its host-side launches (on the H200 a ViT pretraining run
# took 87-88 s with three other findings beside it, 74-78 s with one), so one process's kernels fill
# another's gaps, and their CPU work (probes, glyph rendering) spreads over the host's cores, a share
# each. A unit that several need (cross reads fe_vs_ft's and feature_reuse's runs; those two share
# the ResNet zoo) is computed once, by whichever gets to it first: the others wait on its lock file
# in the cache, then read it. A pack that meets a file being written is redone a minute later; the
# last one runs after all end.
study_start=$(date +%s.%N)
stop_packing=$(mktemp -u /tmp/gpu-study-stop.XXXXXX)
pack_every_minute() {   # until $stop_packing exists; checked every 5 s, so it stops soon after
  local ticks=0
  while [ ! -e "$stop_packing" ]; do
    sleep 5
    ticks=$((ticks + 1))
    if [ $((ticks % 12)) = 0 ]; then pack > /dev/null 2>&1 || true; fi
  done
}
pack_every_minute &
packer=$!
# Whether the processes keep the GPU busy: its utilisation and memory every second, in gpu-usage.csv.
monitor=""
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 1 > "$dest/gpu-usage.csv" 2>&1 &
  monitor=$!
fi
# side_by_side STEP:FINDING[:SEED]...: each as a process with its share of the cores; waits for all.
side_by_side() {
  local threads=$(( $(nproc) / $# )) pids=() job name finding seed
  [ "$threads" -ge 1 ] || threads=1
  for job in "$@"; do
    IFS=: read -r name finding seed <<< "$job"
    OMP_NUM_THREADS=$threads step "$name" "$py" -m transferlab run "$finding" --profile "$profile" \
      ${seed:+--seed "$seed"} &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
}
# study FINDING...: their seeds side by side, then their runs of all seeds side by side.
study() {
  local per_seed=() whole=() finding seed
  for finding in "$@"; do
    for seed in $(seq 0 $(( seeds_of[$finding] - 1 ))); do per_seed+=("$finding-seed$seed:$finding:$seed"); done
    whole+=("$finding:$finding")
  done
  side_by_side "${per_seed[@]}"
  side_by_side "${whole[@]}"
}
# shellcheck disable=SC2086  # finding names are plain words
study $findings
touch "$stop_packing" && wait "$packer" || true
if [ -n "$monitor" ]; then kill "$monitor" 2> /dev/null || true; fi
rm -f "$stop_packing"
pack
printf '%-16s %8s s  at %7s s\n' "study (findings)" "$(seconds_since "$study_start")" "$(offset "$study_start")" \
  | tee -a "$dest/timings.txt"
# After the whole study (not a part of it named on the command line), with --skip-benchmarks too:
# where the eager training loop's epoch goes (device busy share, launches per step, top kernels),
# then, except on ci (compiling takes minutes on a CPU), what torch.compile adds to the training
# benchmark, first with CUDA graphs (one launch per step, for a step bound by launches), then its
# default mode (compile time is in the untimed warm-up). benchmarks-compile.tgz is rewritten after
# each; on a lent machine a call resuming after the time limit skips those an earlier call finished.
once() {   # once NAME CMD...: `step`, unless an earlier call on this lent machine finished NAME
  local marker="$cache/after-study-$profile-$1.done"
  if [ -n "${OUT:-}" ] && [ -f "$marker" ]; then echo "$1: finished by an earlier call on this machine"; return 0; fi
  step "$@" || return $?
  if [ -n "${OUT:-}" ]; then touch "$marker"; fi
}
if [ ${#named[@]} = 0 ]; then
  once profile-train "$py" -m benchmarks.profile_train "${bench_args[@]}" || failed=1
  tar -czf "$dest/benchmarks-compile.tgz" -C "$bench_dir" .
  compile_modes="reduce-overhead 1"
  if [ "$profile" = ci ]; then compile_modes=""; fi
  for compile_mode in $compile_modes; do
    once "train-compile-$compile_mode" env TRANSFERLAB_COMPILE=$compile_mode "$py" -m benchmarks --only train \
      "${bench_args[@]}" || failed=1
    tar -czf "$dest/benchmarks-compile.tgz" -C "$bench_dir" .
  done
fi
printf '%-16s %8s s  at %7s s\n' total "$(seconds_since "$total_start")" 0.0 | tee -a "$dest/timings.txt"
pack
if [ -n "${OUT:-}" ]; then rm -r "$dest/logs"; fi
exit $failed
