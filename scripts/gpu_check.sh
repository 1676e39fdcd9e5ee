#!/usr/bin/env bash
# The GPU check of issue 12 (a grid of runs at the accelerator's speed), as ONE call on a device machine:
#
#   (here, once)  ../shared/tools/gpu-bundle            # fills .gpu/: wheels, hair-loss at 224 px, activate
#   (device run)  command: source .gpu/activate && bash scripts/gpu_check.sh
#                 carry: [".gpu"]    timeout_s: 600
#
# Steps, each under its own timeout, the whole inside about 5-6 minutes (activate ~1 min before it), so that a
# rerun fits in the same 15-minute device session:
#   1. the machine: nvidia-smi, torch and its CUDA                                     (20 s)
#   2. pytest -m gpu: the CUDA-only tests, device and memory tests first               (<= 150 s)
#   3. benchmarks/run.py --device cuda --quick on the 224 px hair-loss copy            (<= 200 s; no figure
#      starts after --budget 140 s, so the last one has room to end)
#   4. a torch.profiler summary of one training epoch: the top CUDA kernels and the share of the step the
#      GPU sits idle, to say where a missed figure goes                                 (<= 60 s)
#   5. $OUT/gpu_check.tar.gz: the log, results.json, profile.txt and the environment   (a few s)
# What comes back ($OUT, at most 8 files): gpu_check.log, results.json, profile.txt, gpu_check.tar.gz.
set -uo pipefail
out=${OUT:-/tmp/gpu-check}
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
  step "benchmarks --device cuda --quick" 200 \
    python3 benchmarks/run.py --device cuda --quick --budget 140 --results "$out/results.json"
  step "profile" 60 python3 scripts/profile_epoch.py --device cuda --out "$out/profile.txt"
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
