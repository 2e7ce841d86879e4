#!/usr/bin/env python3
"""Checks a progc run's TensorBoard event file with TensorBoard's own reader.

Loads RUN_DIR's events with `tensorboard`'s EventAccumulator and compares every scalar with
RUN_DIR/metrics.jsonl: the same steps, once each, and the same values (as f32); and checks a
growth note (text plugin) at each row where the depth changes. Given an
experiment directory, checks every run in it. Needs `pip install tensorboard`; not part of CI.

Usage: scripts/check-tensorboard.py RUN_DIR [RUN_DIR ...]
"""
import json
import os
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

# The tags progc writes (src/exec/io/events.rs, SCALARS) and the metrics.jsonl field of each;
# a progc test checks these two tables against that list.
TAGS = {
    "loss/train": "train_loss",
    "loss/val": "val_loss",
    "lr": "lr",
    "model/depth": "depth",
    "data/tokens": "tokens",
    "perf/tok_per_s": "tok_per_s",
    "compute/flops_exact": "flops",
}
MFLOPS_TAGS = {
    "by_mflops/loss_train": "train_loss",
    "by_mflops/loss_val": "val_loss",
}


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def check(run):
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if l.strip()]
    acc = EventAccumulator(run, size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    problems = []
    for by_mflops, table in ((False, TAGS), (True, MFLOPS_TAGS)):
        for tag, field in table.items():
            step = (lambda r: round(r["flops"] / 1e6)) if by_mflops else (lambda r: r["step"])
            want = [(step(r), f32(r[field])) for r in rows if r[field] is not None]
            got = [(e.step, e.value) for e in acc.Scalars(tag)] if tag in tags else []
            if got != want:
                problems.append(f"{tag}: {len(got)} events, {len(want)} rows; first difference "
                                f"{next(((g, w) for g, w in zip(got, want) if g != w), None)}")
    steps = [e.step for e in acc.Scalars("loss/train")] if "loss/train" in tags else []
    if len(steps) != len(set(steps)):
        problems.append("a step appears twice")
    # A growth note (text plugin) at each row where the depth changes, and nowhere else.
    changes = [b["step"] for a, b in zip(rows, rows[1:]) if b["depth"] != a["depth"]]
    notes = []
    if "growth" in acc.Tags().get("tensors", []):
        notes = [(e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors("growth")]
    if [s for s, _ in notes] != changes:
        problems.append(f"growth notes at {[s for s, _ in notes]}, depth changes at {changes}")
    status = "ok" if not problems else "FAILED"
    print(f"{run}: {status}: {len(rows)} rows, {len(tags)} scalar tags "
          f"({', '.join(sorted(tags))}), steps {rows[0]['step']}..{rows[-1]['step']}")
    for step, text in notes:
        print(f"  growth note at step {step}: {text}")
    for p in problems:
        print(f"  {p}")
    return not problems


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = []
    for d in sys.argv[1:]:
        if os.path.exists(os.path.join(d, "metrics.jsonl")):
            runs.append(d)
        else:
            runs += sorted(os.path.join(d, s) for s in os.listdir(d)
                           if os.path.exists(os.path.join(d, s, "metrics.jsonl")))
    if not runs:
        sys.exit("error: no run directory (with metrics.jsonl) found")
    ok = all([check(r) for r in runs])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
