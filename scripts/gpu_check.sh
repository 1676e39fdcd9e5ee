#!/usr/bin/env bash
# The GPU check of issue 12 (a grid of runs at the accelerator's speed), as ONE call on a device machine:
#
#   (here, once)  bash scripts/gpu_check.sh prepare          # ../shared/tools/gpu-bundle plus the scikit-posthocs
#                                                            # wheel (not on the device image): .gpu/, about 40 MiB
#   (device run)  command: source .gpu/activate && bash scripts/gpu_check.sh
#                 carry: [".gpu"]    timeout_s: 600
#   (rehearsal)   PYTHONPATH=$PWD/scripts/device_sim CHECK_DEVICE=cpu bash scripts/gpu_check.sh   # on this CPU,
#                 with what the device image lacks made unimportable unless .gpu/whl brings it (about 5 minutes;
#                 the benchmark runs into its limit on a CPU, the figures it wrote by then show the wiring works)
#
# Steps, each under its own timeout, the whole inside about 5-6 minutes (activate ~1 min before it), so that a
# rerun fits in the same 15-minute device session:
#   1. the machine: nvidia-smi, torch and its CUDA                                     (20 s)
#   2. pytest -m gpu: the CUDA-only tests, device and memory tests first               (<= 150 s)
#   3. the mutants that only a CUDA test can kill (scripts/mutants.py, needs_cuda)    (<= 45 s)
#   4. benchmarks/run.py --device cuda --quick on the 224 px hair-loss copy            (<= 200 s; no figure
#      starts after --budget 140 s, so the last one has room to end)
#   5. a torch.profiler summary of one training epoch: the top CUDA kernels and the share of the step the
#      GPU sits idle, to say where a missed figure goes                                 (<= 60 s)
#   6. $OUT/gpu_check.tar.gz: the log, results.json, profile.txt and the environment   (a few s)
# What comes back ($OUT, at most 8 files): gpu_check.log, results.json, profile.txt, gpu_check.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
  python=${PYTHON:-python3}
  posthocs=$("$python" -c "from importlib.metadata import version; print(version('scikit-posthocs'))") || exit 1
  PYTHON=$python GPU_BUNDLE_EXTRA="scikit-posthocs==$posthocs" exec ../shared/tools/gpu-bundle
fi
[ $# -eq 0 ] || { echo "usage: $0 [prepare]" >&2; exit 2; }
out=${OUT:-/tmp/gpu-check}
device=${CHECK_DEVICE:-cuda}
profile_sizes=()  # the profile's own defaults on the GPU; on a CPU rehearsal a few small steps (CPU rates mean nothing)
[ "$device" = cuda ] || profile_sizes=(--steps 2 --batch 4 --size 64)
mkdir -p "$out"
log="$out/gpu_check.log"
begin=$(date +%s)
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg BENCHKIT_HAIR_LOSS=${BENCHKIT_HAIR_LOSS:-$PWD/.gpu/hair-loss-224}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/benchkit-inductor}

step() {  # step NAME SECONDS COMMAND...: runs it under a timeout (SIGINT first, so results are written)
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit} s, $(( $(date +%s) - begin )) s elapsed)"
  timeout --signal=INT --kill-after=20 "$limit" "$@"
  local rc=$?
  echo "=== $name: exit $rc ($(( $(date +%s) - begin )) s elapsed)"
}

{
  step "machine" 20 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc;
    python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda,
    torch.cuda.get_device_name(0), torch.backends.cudnn.version())"'
  step "pytest -m gpu" 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_devices.py tests/test_memory.py \
    tests/test_gpu.py
  step "CUDA-only mutants" 45 python3 scripts/mutation_check.py --no-baseline --cuda-only
  step "benchmarks --device $device --quick" 200 \
    python3 benchmarks/run.py --device "$device" --quick --budget 140 --results "$out/results.json"
  step "profile" 60 python3 scripts/profile_epoch.py --device "$device" "${profile_sizes[@]}" --out "$out/profile.txt"
  echo "=== done in $(( $(date +%s) - begin )) s"
} 2>&1 | tee "$log"

python3 - "$out/environment.json" <<'PY' 2>/dev/null
import json, sys, torch, platform
json.dump({"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}, open(sys.argv[1], "w"))
PY
tar czf "$out/gpu_check.tar.gz" -C "$out" $(cd "$out" && ls gpu_check.log results.json profile.txt environment.json 2>/dev/null)
rm -f "$out/environment.json"
ls -l "$out"
