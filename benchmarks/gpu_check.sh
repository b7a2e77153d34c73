#!/usr/bin/env bash
# The GPU checks of issue 8 in one go, sized to end within 10 minutes on one H200 (on the lent one, without vllm: about 6).
#
# The lent GPU machine (nvidia-h200) has python3 3.12 with torch 2.11, transformers 5.17, pytest and
# pillow, but no network, no vllm, no ray and no webdataset (see /work/.library/device/KINDS.md).
# vllm cannot travel (its wheel is 336 MB and wants another torch; 64 MiB travel with the tree), so
# there the vllm steps print "skipped" and the full-size measurement runs on the transformers backend
# (LLaVA-1.5-7B shape, random bf16 weights). webdataset and braceexpand (pure Python) travel as wheels.
#
#   1. here, once (needs the package index):   bash benchmarks/gpu_check.sh wheels
#   2. one device call:   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
#
# Every step has its own timeout so one that hangs cannot eat the others' time; the logs are written
# to $OUT (the device tool brings them back) or /tmp/gpu_check.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "wheels" ]]; then
    grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >>.git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
        webdataset==1.0.2 braceexpand==0.1.7
    exit
fi

PY=${PYTHON:-python3}
LOGS=${OUT:-/tmp/gpu_check}
mkdir -p "$LOGS"
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false

step() {  # step NAME SECONDS COMMAND...: run with a timeout, log to $LOGS/NAME.log, report the status
    local name=$1 seconds=$2
    shift 2
    echo "=== $name: $* (at most ${seconds}s)"
    local start=$SECONDS
    timeout "$seconds" "$@" 2>&1 | tee "$LOGS/$name.log" | grep -v -E "Loading weights|Writing model|it/s\]"
    echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start))s"
}

nvidia-smi -L
$PY -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, \
'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)"
$PY -c "import importlib.util as u; print({m: bool(u.find_spec(m)) for m in ('vllm', 'ray', 'webdataset')})"

# the tests marked gpu (only the files that hold some: the others import packages this machine lacks)
step pytest_gpu 150 $PY -m pytest -m gpu -q -p no:cacheprovider $(grep -rl "mark.gpu" tests --include="*.py")

# recaption vs the hand-written loop: vLLM with dummy weights where vllm exists ...
step recaption_vllm 270 $PY benchmarks/recaption.py --backend vllm --photos examples/photos --copies 64 --batch 64
# ... else the same shape through transformers (random bf16 weights built on the GPU, 14 GB saved once)
if ! $PY -c "import vllm" 2>/dev/null; then
    step recaption_7b 330 $PY benchmarks/recaption.py --size 7b --photos examples/photos --copies 16 --batch 16
fi

step caption_vllm 150 $PY benchmarks/caption.py --backends vllm --photos examples/photos --copies 32
