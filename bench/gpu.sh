#!/usr/bin/env bash
# GPU benchmark, for a machine with an NVIDIA GPU: progc (burn-cuda) on GPT-2 small, batch
# 8 x 1024, next to PyTorch on the same GPU. Prints figures; it is not a test.
#
# In order (cheapest and most informative first, so a short GPU lease still gets the key
# figures):
#   1. bench/kernels.rs on CUDA, then on wgpu (Vulkan on the same GPU): the fused head against
#      its float64 reference (relative errors), progc's CubeCL attention and LayerNorm kernels
#      against the composition they replace (ms per forward + backward at GPT-2 small's
#      shapes), and the measured matmul rate and bandwidth, with the floors they set;
#   2. progc cold start (launch to the end of the first optimizer step) with an empty kernel
#      cache, then with the cache warm; steady-state tok/s at 12 layers and at 0 layers, in
#      f32 and in bf16;
#   3. PyTorch (bench/torch_gpt2.py) bf16 with and without torch.compile, and at 0 layers;
#   4. a whole progressive run (0 -> 12 at 80%) against the fixed run of the same length:
#      wall-clock saving next to FLOP saving.
# Each progc run is limited to STEP_TIMEOUT seconds (default 300); a phase that runs out is
# reported as such and the script goes on.
#
# Usage: bench/gpu.sh [PROGC_BINARY] [KERNELS_BINARY]
#   defaults: target/release/progc, and the newest target/release/deps/kernels-*; build them
#   with `cargo build --release --bins --benches`. Writes everything under bench-out/ (or
#   $BENCH_OUT).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/progc}
KERNELS=${2:-$(ls -t target/release/deps/kernels-* 2>/dev/null | grep -v '\.d$' | head -n 1)}
OUT=${BENCH_OUT:-bench-out}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
[ -x "$BIN" ] || { echo "no progc binary at $BIN: run cargo build --release" >&2; exit 1; }
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== 1. kernels and floors"
if [ -n "$KERNELS" ] && [ -x "$KERNELS" ]; then
  timeout "$STEP_TIMEOUT" "$KERNELS" cuda 2>&1 | tee "$OUT/kernels.txt"
  timeout "$STEP_TIMEOUT" "$KERNELS" wgpu 2>&1 | tee "$OUT/kernels-wgpu.txt"
else
  echo "no kernels bench binary: build it with cargo build --release --benches"
fi

run() {  # run NAME RECIPE CACHE_DIR [progc args...] -> trains into $OUT/NAME
  local name=$1 recipe=$2 cache=$3
  shift 3
  rm -rf "${OUT:?}/$name"
  local t0=$SECONDS
  if PROGC_CACHE_DIR="$cache" timeout "$STEP_TIMEOUT" "$BIN" run bench/gpu.prog --run "$recipe" \
      --device cuda --no-progress --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1; then
    echo "  $name: done in $((SECONDS - t0)) s"
  else
    echo "  $name: failed or timed out after $((SECONDS - t0)) s (see $OUT/$name.log)"
    tail -n 5 "$OUT/$name.log"
  fi
}

echo "== 2. progc"
cache=$(mktemp -d)          # empty: every kernel compiles (and is autotuned) once
run cold bench_full "$cache"
run warm bench_full "$cache" # same cache, now warm
run zero bench_zero "$cache"
run cold_bf16 bench_full "$cache" --precision bf16
run warm_bf16 bench_full "$cache" --precision bf16
run zero_bf16 bench_zero "$cache" --precision bf16
echo "  kernel cache: $(du -sh "$cache" | cut -f1) in $cache"

echo "== 3. PyTorch"
torch() {
  timeout "$STEP_TIMEOUT" python3 bench/torch_gpt2.py --device cuda --width 768 --heads 12 \
    --context 1024 --vocab 50257 --batch 8 --steps 30 --warmup-steps 5 "$@" | tail -n 1 |
    python3 -c "import json,sys; print(json.loads(sys.stdin.read()).get('tok_per_s', 'nan'))" ||
    echo nan
}
t_full_compile=$(torch --depth 12 --dtype bf16 --compile)
t_full_eager=$(torch --depth 12 --dtype bf16)
t_zero=$(torch --depth 0 --dtype bf16)
echo "  torch bf16+compile $t_full_compile, bf16 eager $t_full_eager, 0 layers bf16 $t_zero tok/s"

echo "== 4. progressive against fixed"
run prog bench_prog "$cache" --precision bf16
run prog_fixed bench_prog_fixed "$cache" --precision bf16

python3 - "$OUT" "$t_full_compile" "$t_full_eager" "$t_zero" <<'PY'
import json, math, os, sys
out, tc, te, tz = sys.argv[1], *map(float, sys.argv[2:])
nan = float("nan")
def summary(d):
    try:
        return json.load(open(f"{out}/{d}/summary.json"))
    except OSError:
        return None
def steady(d):
    try:
        rows = [json.loads(l) for l in open(f"{out}/{d}/metrics.jsonl")]
    except OSError:
        return nan
    xs = sorted(r["tok_per_s"] for r in rows[len(rows) // 2:]
                if r.get("tok_per_s") and math.isfinite(r["tok_per_s"]))
    return xs[len(xs) // 2] if xs else nan
def warm(d):
    s = summary(d)
    return s["warmup_s"] if s else nan
ratio = lambda a, b: a / b if b and math.isfinite(b) else nan
print("progc GPU benchmark (GPT-2 small, batch 8 x 1024)")
for p, sfx in [("f32", ""), ("bf16", "_bf16")]:
    print(f" {p}:")
    print(f"  cold start, empty cache   {warm('cold' + sfx):8.1f} s (target < 60)")
    print(f"  cold start, warm cache    {warm('warm' + sfx):8.1f} s (target < 15)")
    full, zero = steady("warm" + sfx), steady("zero" + sfx)
    print(f"  12 layers {full:10.0f} tok/s   torch bf16+compile {tc:8.0f}  ratio {ratio(full, tc):.2f} (target >= 1.0)")
    print(f"                                 torch bf16 eager   {te:8.0f}  ratio {ratio(full, te):.2f}")
    print(f"  0 layers  {zero:10.0f} tok/s   torch bf16         {tz:8.0f}  ratio {ratio(zero, tz):.2f} (target >= 0.8)")
p, f = summary("prog"), summary("prog_fixed")
if p and f:
    wall = 1 - p["wall_s"] / f["wall_s"]
    flop = 1 - p["flops"]["exact"] / f["flops"]["exact"]
    print(f" progressive 0 -> 12 at 80% (bf16): wall saving {wall:.1%}, FLOP saving {flop:.1%}, ratio {wall / flop:.2f} (target >= 0.9)")
else:
    print(" progressive 0 -> 12: not measured (a run failed or timed out)")
PY
