#!/usr/bin/env bash
# One GPU, about 9 minutes: the cost benchmarks (step time, memory), one Fashion-MNIST study
# (scarce 1 % of the category labels + its 100 % single-task reference) on the full data with
# the configs' small_cnn, 2 seeds, 2 epochs, and the JPEG loader workers a GPU needs at 224 px
# (one worker's decoding rate against resnet18's training rate on the GPU).
#
# Usage:  benchmarks/gpu.sh [--dry-run] FASHION_DIR
#   FASHION_DIR  a folder with the four Fashion-MNIST idx files (train-images-idx3-ubyte[.gz],
#                train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])
#   --dry-run    print the commands, run nothing
#
# Needs only this repository with dmtl installed in the Python it finds ($PYTHON, else
# .venv/bin/python, else python3). Writes benchmarks/results/gpu-cost.json,
# benchmarks/results/gpu-quality.json and benchmarks/results/gpu-loader.json (the card's name
# under "hardware" -> "device" in each) and rebuilds docs/benchmarks.md. Without a GPU it takes its CPU fallback path: the same
# commands with --quick and --device cpu, results and page in a scratch folder.
set -euo pipefail

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=1
    shift
fi
data="${1:?usage: benchmarks/gpu.sh [--dry-run] FASHION_DIR}"
[[ -d "$data" ]] || { echo "not a folder: $data" >&2; exit 2; }

cd "$(dirname "$0")/.."
if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
    py=.venv/bin/python
else
    py=python3
fi
DMTL_FASHION_DIR="$(cd "$data" && pwd)"
export DMTL_FASHION_DIR

if "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    device=cuda
    quick=()
    timing=(--repeats 5 --min-run-time 0.3 --e2e-repeats 3)
    jpeg=(--jpeg 512 --seconds 5)
    results=benchmarks/results
    doc=docs/benchmarks.md
    "$py" -c 'import torch; print("GPU:", torch.cuda.get_device_name(0))'
else
    device=cpu
    quick=(--quick)
    timing=()
    jpeg=(--jpeg 32 --seconds 0.3)
    results="${TMPDIR:-/tmp}/dmtl-benchmarks-gpu-fallback"
    doc="$results/benchmarks.md"
    echo "no GPU found: CPU fallback path (--quick, results in $results)"
fi

common=(--results "$results" --doc "$doc" "${quick[@]}")
cost=("$py" -m benchmarks cost "${common[@]}" --device "$device" "${timing[@]}")
quality=("$py" -m benchmarks quality "${common[@]}" --device "$device"
         --only fashion-scarce-1 fashion-full --seeds 2 --fashion-epochs 2)
# Workers per GPU at 224 px: ceil(resnet18's images/s on the GPU / one worker's JPEGs/s).
loader=("$py" -m benchmarks loader "${common[@]}" --workers-per-gpu --device "$device"
        --jpeg-size 224 "${jpeg[@]}")

run() {
    echo "+ DMTL_FASHION_DIR=$DMTL_FASHION_DIR $*"
    if [[ $dry_run == 0 ]]; then
        local start=$SECONDS
        "$@"
        echo "  ($((SECONDS - start)) s)"
    fi
}

start=$SECONDS
run "${cost[@]}"
run "${quality[@]}"
run "${loader[@]}"
echo "done in $((SECONDS - start)) s; results in $results, page $doc"
