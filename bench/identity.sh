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
def header(p):
    raw = p.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    h = json.loads(raw[8:8 + n])
    return raw[8 + n:], h.pop("__metadata__", {}), h
def ida(p):
    meta = json.loads(header(p)[1]["progc"])
    return {q["name"]: q["id"] for q in meta["params"]}
def by_name(p):
    data, meta, tensors = header(p)
    meta = {k: (json.loads(v) if v.startswith(("{", "[")) else v) for k, v in meta.items()
            if k != "checksum"}
    progc = meta.get("progc", {})
    names = {str(q["id"]): q["name"] for q in progc.get("params", [])}
    out = {}
    for key, t in tensors.items():
        parts = key.split("/")
        if parts[0] == "optim":
            parts[1] = names.get(parts[1], parts[1])
        a, b = t["data_offsets"]
        out["/".join(parts)] = (t["dtype"], t["shape"], data[a:b])
    for q in progc.get("params", []):
        q.pop("id")
    progc["states"] = sorted(({**q, "id": names.get(str(q["id"]), q["id"])}
                              for q in progc.get("states", [])), key=lambda q: str(q["id"]))
    return out, strip(meta)
bad = 0
renamed = set()
for rel in files:
    pa, pb = a / rel, b / rel
    if not pb.exists():
        print(f"missing in {b}: {rel}"); bad += 1; continue
    if pa.suffix == ".safetensors":
        # Tensors are compared by parameter name, byte for byte: optimizer state is stored
        # under ParamIds, which are mapped back to names so that a changed id (not a value)
        # is reported on its own. The metadata's checksum covers the timing, so it is left out.
        (ta, ma), (tb, mb) = by_name(pa), by_name(pb)
        same = ta == tb and ma == mb
        ia, ib = ida(pa), ida(pb)
        ids = sorted(n for n in ia.keys() & ib.keys() if ia[n] != ib[n])
        if same and ids:
            renamed.add(", ".join(ids))
    else:
        same = load(pa) == load(pb)
    if not same:
        print(f"differs: {rel}"); bad += 1
print(f"{len(files)} files compared, {bad} differ")
for ids in sorted(renamed):
    print(f"same values, other ParamIds: {ids}")
sys.exit(1 if bad else 0)
PY
  ;;
*)
  echo "usage: bench/identity.sh run BINARY DIR | compare DIR_A DIR_B" >&2; exit 2 ;;
esac
