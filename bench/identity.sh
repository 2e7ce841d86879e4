#!/usr/bin/env bash
# Behaviour must not change in a refactor of the executor. This runs three jobs with a given
# progc binary and compares two such outputs file by file, wall-clock fields aside:
#   bench/identity.sh run BINARY DIR     # the main command, a seeded experiment with growths
#                                        # (bench/identity.prog) and a `--devices cpu:2` run
#   bench/identity.sh compare DIR_A DIR_B
# JSON files are compared with the timing keys removed (warmup_s, train_s, tok_per_s, started,
# and every key with `wall` in its name); tensors in checkpoints byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
run)
  bin=$2 out=$3
  mkdir -p "$out"
  "$bin" run examples/tiny.prog --out "$out/main" --no-progress
  "$bin" run bench/identity.prog --experiment identity --out "$out/exp" --no-progress
  "$bin" run examples/tiny.prog --devices cpu:2 --out "$out/dp" --no-progress
  ;;
compare)
  python3 - "$2" "$3" <<'PY'
import json, pathlib, sys
a, b = map(pathlib.Path, sys.argv[1:3])
TIMING = {"warmup_s", "train_s", "tok_per_s", "started"}
def timing(key):
    return key in TIMING or "wall" in key
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if not timing(k)}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
def load(p):
    if p.suffix == ".jsonl":
        return [strip(json.loads(l)) for l in p.read_text().splitlines() if l.strip()]
    return strip(json.loads(p.read_text()))
files = sorted(p.relative_to(a) for p in a.rglob("*")
               if p.is_file() and p.suffix in {".json", ".jsonl", ".safetensors"})
bad = 0
for rel in files:
    pa, pb = a / rel, b / rel
    if not pb.exists():
        print(f"missing in {b}: {rel}"); bad += 1; continue
    if pa.suffix == ".safetensors":
        # The header's metadata holds the run state as JSON (its checksum covers the timing
        # too, so it is left out); the tensors must match byte for byte.
        ra, rb = pa.read_bytes(), pb.read_bytes()
        na, nb = int.from_bytes(ra[:8], "little"), int.from_bytes(rb[:8], "little")
        ha, hb = json.loads(ra[8:8 + na]), json.loads(rb[8:8 + nb])
        ma, mb = ha.pop("__metadata__", {}), hb.pop("__metadata__", {})
        ma.pop("checksum", None), mb.pop("checksum", None)
        same = ha == hb and ra[8 + na:] == rb[8 + nb:] and \
            {k: strip(json.loads(v)) if v.startswith("{") else v for k, v in ma.items()} == \
            {k: strip(json.loads(v)) if v.startswith("{") else v for k, v in mb.items()}
    else:
        same = load(pa) == load(pb)
    if not same:
        print(f"differs: {rel}"); bad += 1
print(f"{len(files)} files compared, {bad} differ")
sys.exit(1 if bad else 0)
PY
  ;;
*)
  echo "usage: bench/identity.sh run BINARY DIR | compare DIR_A DIR_B" >&2; exit 2 ;;
esac
