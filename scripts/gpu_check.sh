#!/usr/bin/env bash
# Short GPU check (issue 4), meant for a lent GPU machine with a time budget of minutes:
# reports what the machine offers, then measures what it can, within about 8 minutes:
#   * samstream with --device cuda and tensorrt (--device-fallback fail, so a missing provider
#     is an error, not a silent CPU run), Segment median over 20 calls, if the binary runs;
#   * the Python onnxruntime pipeline on CUDAExecutionProvider, if onnxruntime-gpu is there;
#   * PyTorch SamPredictor on CUDA (set_image + predict), if torch sees a GPU.
# Everything is written to ${OUT:-/tmp/gpu-check}/gpu_check.json and printed.
#
#   MODEL_DIR=... SAMSTREAM_BIN=... ORT_DYLIB_PATH=... bash scripts/gpu_check.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
report="$OUT/gpu_check.json"
echo "{}" >"$report"
note() { "$PY" - "$report" "$1" "$2" <<'PYEOF'
import json, sys
path, key, value = sys.argv[1:]
data = json.load(open(path))
try:
    data[key] = json.loads(value)
except json.JSONDecodeError:
    data[key] = value
json.dump(data, open(path, "w"), indent=2)
PYEOF
}

note gpu "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo none)"
note onnxruntime_providers "$("$PY" -c 'import json, onnxruntime as o; print(json.dumps(o.get_available_providers()))' 2>/dev/null || echo '"no onnxruntime"')"
note torch_cuda "$("$PY" -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null || echo '"no torch"')"

MODEL_DIR=${MODEL_DIR:-${SAMSTREAM_MODEL_DIR:-}}
[ -f "$MODEL_DIR/encoder.onnx" ] || { echo "MODEL_DIR with encoder.onnx/decoder.onnx needed"; cat "$report"; exit 1; }
ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=1 -frames:v 1 "$OUT/frame.jpg" 2>/dev/null \
  || "$PY" -c "from PIL import Image; import numpy as np; Image.fromarray((np.random.default_rng(0).random((720,1280,3))*255).astype('uint8')).save('$OUT/frame.jpg')"

if [ -x "${SAMSTREAM_BIN:-}" ] && [ -f "${ORT_DYLIB_PATH:-}" ]; then
  for device in cuda:0 tensorrt:0; do
    log="$OUT/serve-${device%%:*}.log"
    timeout 300 "$SAMSTREAM_BIN" serve --model-dir "$MODEL_DIR" --listen 127.0.0.1:0 --device "$device" --device-fallback fail >"$log" 2>&1 &
    pid=$!
    addr=""
    for _ in $(seq 600); do
      addr=$(sed -n 's/^samstream listening on //p' "$log"); [ -n "$addr" ] && break
      kill -0 $pid 2>/dev/null || break; sleep 0.1
    done
    if [ -n "$addr" ] && timeout 240 "$SAMSTREAM_BIN" client --server "http://$addr" --image "$OUT/frame.jpg" --point 640,360 --ready-timeout 200 >/dev/null 2>&1; then
      note "samstream_${device%%:*}_segment" "$("$SAMSTREAM_BIN" bench --server "http://$addr" --rpc segment --requests 20 --image "$OUT/frame.jpg" --json)"
      note "samstream_${device%%:*}_prompt_update" "$("$SAMSTREAM_BIN" bench --server "http://$addr" --rpc prompt-update --requests 20 --image "$OUT/frame.jpg" --json)"
    else
      note "samstream_${device%%:*}" "not run: $(grep -m1 -iE 'error|unavailable' "$log" | cut -c1-300)"
    fi
    kill $pid 2>/dev/null; wait $pid 2>/dev/null
  done
else
  note samstream "not run: SAMSTREAM_BIN / ORT_DYLIB_PATH not given"
fi

"$PY" - "$MODEL_DIR" "$OUT/frame.jpg" "$ROOT/bench" >"$OUT/python.json" 2>"$OUT/python.err" <<'PYEOF'
import json, statistics, sys, time
import numpy as np
from PIL import Image
model_dir, image, bench_dir = sys.argv[1:]
out = {}
rgb = np.asarray(Image.open(image).convert("RGB"))
try:
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        sys.path.insert(0, bench_dir)
        from ort_pipeline import OrtPipeline
        p = OrtPipeline.__new__(OrtPipeline)
        prov = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        p.encoder = ort.InferenceSession(f"{model_dir}/encoder.onnx", providers=prov)
        p.decoder = ort.InferenceSession(f"{model_dir}/decoder.onnx", providers=prov)
        obj = [{"points": [[640, 360, 1]], "box": None}]
        times = []
        for i in range(21):
            t = time.perf_counter(); p.segment(rgb, obj); times.append(time.perf_counter() - t)
        out["python_ort_cuda_ms"] = statistics.median(times[1:]) * 1e3
    else:
        out["python_ort_cuda"] = "not run: onnxruntime has no CUDAExecutionProvider (CPU build)"
except Exception as e:  # noqa: BLE001
    out["python_ort_cuda"] = f"failed: {e}"
try:
    import torch
    if torch.cuda.is_available():
        from mobile_sam import SamPredictor, sam_model_registry
        torch.manual_seed(0)
        predictor = SamPredictor(sam_model_registry["vit_t"]().cuda().eval())
        times = []
        with torch.inference_mode():
            for i in range(21):
                torch.cuda.synchronize(); t = time.perf_counter()
                predictor.set_image(rgb)
                predictor.predict(point_coords=np.array([[640, 360]]), point_labels=np.array([1]), multimask_output=False)
                torch.cuda.synchronize(); times.append(time.perf_counter() - t)
        out["pytorch_cuda_ms"] = statistics.median(times[1:]) * 1e3
    else:
        out["pytorch_cuda"] = "not run: torch sees no GPU"
except Exception as e:  # noqa: BLE001
    out["pytorch_cuda"] = f"failed: {e}"
print(json.dumps(out))
PYEOF
note python "$(cat "$OUT/python.json" 2>/dev/null || echo '"failed"')"
cat "$report"
