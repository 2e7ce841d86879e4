#!/usr/bin/env bash
# GPU benchmark, for a machine with an NVIDIA GPU: progc (burn-cuda) on GPT-2 small, batch
# 8 x 1024, next to PyTorch on the same GPU.
#
# Prints, for progc: cold-start seconds (launch to the end of the first optimizer step, with an
# empty kernel cache, then again with the cache warm) and steady-state tok/s at full depth and
# at depth 0; for PyTorch (bench/torch_gpt2.py): tok/s in bf16 autocast with and without
# torch.compile; and the ratios. Then a whole progressive run (0 -> 12 at 80%) against the
# fixed run of the same length: wall-clock saving next to FLOP saving.
#
# Usage: bench/gpu.sh [PROGC_BINARY]   (default target/release/progc; build it with
#        `cargo build --release` first). Writes everything under bench-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/progc}
OUT=${BENCH_OUT:-bench-out}
[ -x "$BIN" ] || { echo "no progc binary at $BIN: run cargo build --release" >&2; exit 1; }
mkdir -p "$OUT"

run() {  # run() NAME RECIPE CACHE_HOME -> trains into $OUT/NAME
  rm -rf "$OUT/$1"
  HOME="$3" "$BIN" run bench/gpu.prog --run "$2" --device cuda --no-progress --out "$OUT/$1"
}

cold_home=$(mktemp -d)       # empty: every kernel compiles
run cold bench_full "$cold_home"
run warm bench_full "$cold_home"   # same cache, now warm
run zero bench_zero "$cold_home"

torch() {
  python3 bench/torch_gpt2.py --device cuda --width 768 --heads 12 --context 1024 --vocab 50257 \
    --batch 8 --steps 30 --warmup-steps 5 "$@" | tail -n 1 |
    python3 -c "import json,sys; print(json.loads(sys.stdin.read()).get('tok_per_s', 'nan'))" ||
    echo nan
}
t_full_compile=$(torch --depth 12 --dtype bf16 --compile)
t_full_eager=$(torch --depth 12 --dtype bf16)
t_zero=$(torch --depth 0 --dtype bf16)

run prog bench_prog "$cold_home"
run prog_fixed bench_prog_fixed "$cold_home"

python3 - "$OUT" "$t_full_compile" "$t_full_eager" "$t_zero" <<'PY'
import json, sys
out, tc, te, tz = sys.argv[1], *map(float, sys.argv[2:])
s = lambda d: json.load(open(f"{out}/{d}/summary.json"))
def steady(d):
    rows = [json.loads(l) for l in open(f"{out}/{d}/metrics.jsonl")]
    xs = sorted(r["tok_per_s"] for r in rows[len(rows)//2:] if r["tok_per_s"])
    return xs[len(xs)//2] if xs else float("nan")
cold, warm = s("cold"), s("warm")
full, zero = steady("warm"), steady("zero")
print("progc GPU benchmark (GPT-2 small, batch 8 x 1024, f32)")
print(f"  cold start, empty cache   {cold['warmup_s']:8.1f} s (target < 60)")
print(f"  cold start, warm cache    {warm['warmup_s']:8.1f} s (target < 15)")
print(f"  12 layers                 {full:8.0f} tok/s   torch bf16+compile {tc:8.0f}  ratio {full/tc:.2f} (target >= 1.0)")
print(f"                                               torch bf16 eager   {te:8.0f}  ratio {full/te:.2f}")
print(f"  0 layers                  {zero:8.0f} tok/s   torch bf16         {tz:8.0f}  ratio {zero/tz:.2f} (target >= 0.8)")
p, f = s("prog"), s("prog_fixed")
wall = 1 - p["wall_s"] / f["wall_s"]
flop = 1 - p["flops"]["exact"] / f["flops"]["exact"]
print(f"  progressive 0 -> 12 at 80%: wall saving {wall:.1%}, FLOP saving {flop:.1%}, ratio {wall/flop:.2f} (target >= 0.9)")
PY
