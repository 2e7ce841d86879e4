#!/usr/bin/env bash
# Data-parallel benchmark: the same recipe on 1 device, on N CPU peers in one process, and on N
# processes joined through node 0 on 127.0.0.1 (one peer each). A benchmark, not a test: CI
# does not run it. On a CPU the peers share the machine's cores, so this measures the overhead
# of splitting the batch and averaging the gradients, not a speed-up; a multi-GPU machine gives
# the real figure (`DEVICES=cuda:0,cuda:1`).
#
# Prints one line per setting, side by side: training tok/s over the whole run (global, from
# summary.json: tokens / training seconds, warm-up steps left out), each peer's own tok/s, the
# ratio to 1 device, and the final validation loss (which must agree to float rounding).
#
# Usage: bench/parallel.sh
#   RECIPE=examples/tiny.prog   the recipe (its batch must divide by N)
#   N=2                         peers
#   DEVICES=cpu:N               the peers of the in-process setting
#   PROGC=PATH                  use this binary instead of building target/release/progc
#   BENCH_OUT=DIR               where the run directories go (default: a fresh temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."

RECIPE=${RECIPE:-examples/tiny.prog}
N=${N:-2}
DEVICES=${DEVICES:-cpu:$N}
OUT=${BENCH_OUT:-$(mktemp -d -t progc-parallel.XXXXXX)}
mkdir -p "$OUT"
if [ -n "${PROGC:-}" ]; then
  BIN=$PROGC
else
  cargo build --release --bin progc
  BIN=target/release/progc
fi
PORT=$((20000 + RANDOM % 20000))

run() { # NAME ARGS...
  local name=$1
  shift
  /usr/bin/time -f "%e %U %S" -o "$OUT/$name.time" "$BIN" run "$RECIPE" --no-progress \
    --out "$OUT/$name" "$@" >"$OUT/$name.log" 2>&1
}

run one --device cpu
run peers --devices "$DEVICES"
pids=()
for ((r = N - 1; r >= 0; r--)); do
  /usr/bin/time -f "%e %U %S" -o "$OUT/node$r.time" "$BIN" run "$RECIPE" --no-progress \
    --out "$OUT/node$r" --devices cpu:1 --nodes "$N" --node-rank "$r" \
    --orchestrator "127.0.0.1:$PORT" >"$OUT/node$r.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

python3 - "$OUT" "$N" <<'EOF'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
def summary(name):
    return json.load(open(f"{out}/{name}/summary.json"))
def wall(name):
    e, u, s = open(f"{out}/{name}.time").read().split()[-3:]
    return float(e), float(u) + float(s)
base = None
print(f"{'setting':<22} {'global tok/s':>12} {'per peer tok/s':>22} {'ratio':>6} "
      f"{'wall s':>7} {'cpu s':>7} {'val loss':>9}")
for name, label in [("one", "1 device"), ("peers", f"{n} peers, 1 process"),
                    ("node0", f"{n} processes")]:
    s = summary(name)
    # Warm-up steps (the first of each segment) are outside train_s: leave their tokens out.
    tps = s["total_tokens"] / s["total_steps"]
    g = (s["total_steps"] - len(s["segments"])) * tps / s["train_s"]
    peers = s.get("peers", [])
    if peers:
        g = sum(p["tok_per_s"] for p in peers)
        if name == "node0":  # each process lists its own peer
            g = peers[0]["tok_per_s"] * n
    base = base or g
    per = ", ".join(f"{p['tok_per_s']:.0f}" for p in peers) or "-"
    e, c = wall(name)
    print(f"{label:<22} {g:>12.0f} {per:>22} {g / base:>6.2f} {e:>7.1f} {c:>7.1f} "
          f"{s['final_val_loss']:>9.5f}")
EOF
echo "run directories and logs: $OUT"
