#!/usr/bin/env bash
# CPU benchmark: progc (burn, CPU) against an independent PyTorch implementation of the same
# training recipes (bench/torch_tiny.py: same model, init, data order, optimizer grouping,
# schedule and evaluation, so both engines train the same thing and their losses can be put
# side by side). A benchmark, not a test: CI does not run it. Run it on an otherwise idle
# machine: PyTorch's OpenMP threads collapse when another process holds a core.
#
# Workloads, each run PAIRS times, alternating which engine goes first:
#   tiny   progc run examples/tiny.prog                          (1500 steps, depth 0 -> 6 at 1200)
#          torch_tiny.py --recipe tiny
#   fixed  progc run std/paper.prog --run tiny_fixed --stop-after 300   (depth 6 throughout)
#          torch_tiny.py --recipe tiny_fixed --steps 300
# For each process: wall and CPU (user + sys) seconds; tok/s per depth from progc's
# metrics.jsonl (training steps only, the first step of each segment and evaluation left out)
# and from torch_tiny.py's JSON line (measured the same way); both final validation losses.
#
# Usage: bench/vs-pytorch.sh
#   PAIRS=3            paired runs per workload
#   BENCH_OUT=DIR      where run directories and logs go (default: a fresh temp dir)
#   PROGC=PATH         use this progc binary instead of building target/release/progc
#   VENV=DIR           PyTorch virtual environment (default target/torch-venv; created with
#                      `pip install torch numpy` when `import torch` fails there, ~5.6 GB)
#   DEVICE=cpu         progc's --device (the comparison is CPU against CPU)
#   WORKLOADS="tiny fixed"
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-3}
VENV=${VENV:-target/torch-venv}
DEVICE=${DEVICE:-cpu}
WORKLOADS=${WORKLOADS:-tiny fixed}
OUT=${BENCH_OUT:-$(mktemp -d -t progc-vs-pytorch.XXXXXX)}
mkdir -p "$OUT"

if [ -n "${PROGC:-}" ]; then
  BIN=$PROGC
else
  cargo build --release --bin progc
  BIN=target/release/progc
fi
[ -x "$BIN" ] || { echo "no progc binary at $BIN" >&2; exit 1; }

PY=$VENV/bin/python
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
  echo "== installing PyTorch into $VENV (pip install torch numpy; a few minutes)"
  [ -x "$PY" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet torch numpy
fi

# timed FILE CMD...: runs CMD (stdio inherited), writes "wall user sys other" seconds to FILE
# and exits with CMD's status. os.wait4 gives the child's own rusage, so it works where GNU time
# (`/usr/bin/time -f`) is missing and measures to the millisecond. `other` is the CPU time the
# rest of the machine used meanwhile (/proc/stat busy time minus the child's): well above 0, the
# run shared its cores and its figures are suspect.
timed() {
  python3 -c '
import os, subprocess, sys, time
def busy():
    try:
        f = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    except OSError:
        return None
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
b0, t0 = busy(), time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
_, status, ru = os.wait4(p.pid, 0)
wall, b1 = time.perf_counter() - t0, busy()
other = max(0.0, b1 - b0 - ru.ru_utime - ru.ru_stime) if b0 is not None else float("nan")
with open(sys.argv[1], "w") as f:
    f.write(f"{wall:.3f} {ru.ru_utime:.3f} {ru.ru_stime:.3f} {other:.3f}\n")
sys.exit(os.waitstatus_to_exitcode(status))
' "$@"
}

cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)
echo "== progc vs PyTorch on the CPU: $cores cores, $PAIRS pairs, output in $OUT"
echo "progc: $("$BIN" --version 2>/dev/null || echo "$BIN")"
echo "torch: $("$PY" -c 'import torch; print(torch.__version__, "threads", torch.get_num_threads())')"
if [ -r /proc/loadavg ]; then
  read -r load1 _ < /proc/loadavg
  echo "load average before the runs: $load1"
  if python3 -c "import sys; sys.exit(0 if float('$load1') > 0.5 else 1)"; then
    echo "warning: the machine is busy (load $load1): the figures below will be unreliable" >&2
  fi
fi

run_one() {  # run_one WORKLOAD ENGINE PAIR
  local w=$1 e=$2 i=$3 tag="$1-$2-$3"
  local dir="$OUT/$tag" stdout wall user sys other
  local -a cmd
  rm -rf "$dir"
  case $e-$w in
    progc-tiny) cmd=("$BIN" run examples/tiny.prog --device "$DEVICE" --out "$dir") ;;
    progc-fixed) cmd=("$BIN" run std/paper.prog --run tiny_fixed --stop-after 300
                      --device "$DEVICE" --out "$dir") ;;
    torch-tiny) cmd=("$PY" bench/torch_tiny.py --recipe tiny) ;;
    torch-fixed) cmd=("$PY" bench/torch_tiny.py --recipe tiny_fixed --steps 300) ;;
  esac
  # stdout: progc's summary to $tag.log, torch's JSON line to $tag.json; stderr to $tag.err.
  if [ "$e" = progc ]; then stdout="$OUT/$tag.log"; else stdout="$OUT/$tag.json"; fi
  echo "-- pair $i: $e ($w): ${cmd[*]}"
  if ! timed "$OUT/$tag.time" "${cmd[@]}" >"$stdout" 2>"$OUT/$tag.err"; then
    echo "$e failed:" >&2
    tail -n 20 "$stdout" "$OUT/$tag.err" >&2
    exit 1
  fi
  read -r wall user sys other <"$OUT/$tag.time"
  echo "   wall ${wall} s, user ${user} s, sys ${sys} s; other processes used ${other} CPU s meanwhile"
}

for w in $WORKLOADS; do
  case $w in tiny|fixed) ;; *) echo "unknown workload $w (tiny | fixed)" >&2; exit 1 ;; esac
  echo "== workload $w"
  for i in $(seq 1 "$PAIRS"); do
    # Alternate which engine goes first, so drift (thermal, page cache) hits both alike.
    if [ $((i % 2)) -eq 1 ]; then order="progc torch"; else order="torch progc"; fi
    for e in $order; do run_one "$w" "$e" "$i"; done
  done
done

python3 - "$OUT" "$PAIRS" $WORKLOADS <<'EOF'
import json, math, os, statistics, sys

out, pairs, workloads = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
cores = os.cpu_count() or 1
TITLES = {
    "tiny": "tiny: progc run examples/tiny.prog  vs  torch_tiny.py --recipe tiny "
            "(1500 steps, depth 0 -> 6 at step 1200)",
    "fixed": "fixed: progc run std/paper.prog --run tiny_fixed --stop-after 300  vs  "
             "torch_tiny.py --recipe tiny_fixed --steps 300 (depth 6)",
}

def times(tag):
    f = [float(x) for x in open(os.path.join(out, tag + ".time")).read().split()]
    other = f[3] if len(f) > 3 else float("nan")
    return {"wall": f[0], "cpu": f[1] + f[2], "other": other}

def progc_result(tag):
    rows = [json.loads(l) for l in open(os.path.join(out, tag, "metrics.jsonl")) if l.strip()]
    tps = rows[0]["tokens"] // (rows[0]["step"] + 1)
    by_depth = {}
    for r in rows:
        t = r.get("tok_per_s")
        if t is None or not math.isfinite(t) or t <= 0:
            continue  # the first step of a segment (warm-up) has no rate
        n, s = by_depth.get(r["depth"], (0, 0.0))
        by_depth[r["depth"]] = (n + 1, s + tps / t)  # rows are single steps (log_every 1)
    summary = json.load(open(os.path.join(out, tag, "summary.json")))
    loop = sum(seg["wall_s"] for seg in summary.get("segments", []))
    return {
        "loop": loop,
        "tok": {str(d): n * tps / s for d, (n, s) in sorted(by_depth.items())},
        "val": summary.get("final_val_loss"),
        "evals": {r["step"]: r["val_loss"] for r in rows if r.get("val_loss") is not None},
    }

def torch_result(tag):
    lines = [l for l in open(os.path.join(out, tag + ".json")) if l.startswith("{")]
    d = json.loads(lines[-1])
    return {"tok": d["tok_per_s_by_depth"], "val": d["final_val"], "loop": d["loop_s"],
            "evals": {e["step"]: e["val_loss"] for e in d.get("evals", [])}}

med = statistics.median
for w in workloads:
    res = {}
    for e, get in (("progc", progc_result), ("torch", torch_result)):
        res[e] = [dict(times(f"{w}-{e}-{i}"), **get(f"{w}-{e}-{i}")) for i in range(1, pairs + 1)]
    print()
    print("=" * 100)
    print(TITLES[w])
    print(f"{'pair':>6} | {'progc wall s':>12} {'CPU s':>8} {'CPU/wall':>8} | "
          f"{'torch wall s':>12} {'CPU s':>8} {'CPU/wall':>8} | {'torch/progc wall':>16} | "
          f"{'others CPU s':>12}")
    rows = []
    for i in range(pairs):
        p, t = res["progc"][i], res["torch"][i]
        rows.append((str(i + 1), p["wall"], p["cpu"], t["wall"], t["cpu"],
                     f"{p['other']:.0f} / {t['other']:.0f}"))
    mp = lambda k: med(r[k] for r in res["progc"])
    mt = lambda k: med(r[k] for r in res["torch"])
    rows.append(("median", mp("wall"), mp("cpu"), mt("wall"), mt("cpu"), ""))
    for name, pw, pc, tw, tc, oth in rows:
        print(f"{name:>6} | {pw:12.2f} {pc:8.2f} {pc / pw:8.2f} | "
              f"{tw:12.2f} {tc:8.2f} {tc / tw:8.2f} | {tw / pw:16.3f} | {oth:>12}")
    busy = [(e, i + 1) for e in res for i, r in enumerate(res[e])
            if r["other"] > 0.05 * r["wall"] * cores]
    if busy:
        print("  warning: other processes used over 5% of the cores during "
              + ", ".join(f"{e} pair {i}" for e, i in busy)
              + ": those figures are suspect (PyTorch's spinning OpenMP threads slow down"
              " several-fold when a core is taken)")
    ratios = [t["wall"] / p["wall"] for p, t in zip(res["progc"], res["torch"])]
    print(f"  torch/progc wall: median of the pair ratios {med(ratios):.3f} "
          "(>= 1.0: progc is faster)")
    depths = sorted({d for e in res for r in res[e] for d in r["tok"]}, key=int)
    for d in depths:
        pv = [r["tok"].get(d, float("nan")) for r in res["progc"]]
        tv = [r["tok"].get(d, float("nan")) for r in res["torch"]]
        fmt = lambda xs: " ".join(f"{x:.0f}" for x in xs)
        print(f"  tok/s depth {d:>2}: progc median {med(pv):9.0f} ({fmt(pv)})   "
              f"torch median {med(tv):9.0f} ({fmt(tv)})   progc/torch {med(pv) / med(tv):.3f}")
    outside = {e: med(r["wall"] - r["loop"] for r in res[e]) for e in res}
    print(f"  outside the training loop (process wall - loop; startup, data, init, exit), "
          f"median s: progc {outside['progc']:.2f}   torch {outside['torch']:.2f}")
    fmt4 = lambda xs: " ".join("-" if x is None else f"{x:.4f}" for x in xs)
    print(f"  final val loss: progc {fmt4(r['val'] for r in res['progc'])}   "
          f"torch {fmt4(r['val'] for r in res['torch'])}")
    # Both engines evaluate at the same steps: their curves side by side (pair 1).
    pe, te = res["progc"][0]["evals"], res["torch"][0]["evals"]
    common = sorted(set(pe) & set(te))
    if common:
        print("  val loss by step, pair 1 (step: progc / torch / difference):")
    cells = [f"{s:>5}: {pe[s]:.4f} / {te[s]:.4f} / {te[s] - pe[s]:+.4f}" for s in common]
    for k in range(0, len(cells), 4):
        print("    " + "   ".join(cells[k:k + 4]))
print()
print(f"run directories, logs and JSON lines: {out}")
EOF
