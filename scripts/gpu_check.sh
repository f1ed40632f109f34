#!/usr/bin/env bash
# The toy pipeline (train-source, adapt, eval) and `stpl speed` on a GPU, without and with mixed precision.
#   bash scripts/gpu_check.sh [OUT]            (needs a CUDA build of torch: README "On a GPU")
#   DEVICE=cpu bash scripts/gpu_check.sh OUT   (the same on CPU, fp16 left out: a smoke test of the script)
set -euo pipefail
OUT=${1:-runs/gpu-check}
DEVICE=${DEVICE:-cuda}
STPL=${STPL:-stpl}
PYTHON=${PYTHON:-$(dirname "$(command -v "$STPL")")/python}  # the environment stpl runs in
SPEED_ARGS=${SPEED_ARGS:-}
if [ "$DEVICE" = cuda ]; then
  "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch ' + torch.__version__)"
  AMPS="off bf16 fp16"
else
  AMPS="off bf16"
fi
for amp in $AMPS; do
  run="$OUT/toy-$amp"
  $STPL train-source --config configs/toy.yaml --set device="$DEVICE" --set train.amp="$amp" --out "$run/source"
  $STPL adapt --config configs/toy.yaml --set device="$DEVICE" --set adapt.amp="$amp" \
    --source-ckpt "$run/source/model.safetensors" --out "$run/adapt"
  $STPL eval --config configs/toy.yaml --set device="$DEVICE" --ckpt "$run/adapt/model.safetensors" --out "$run/eval"
done
for amp in off bf16; do
  # shellcheck disable=SC2086  # SPEED_ARGS holds several words
  $STPL speed --set device="$DEVICE" --set train.amp="$amp" --set adapt.amp="$amp" $SPEED_ARGS --out "$OUT/speed-$amp"
done
echo "gpu check: toy runs in $OUT/toy-*/eval/eval.json, timings in $OUT/speed-*/results.md"
