#!/usr/bin/env python3
"""The sampling noise of progc's validation loss, from `progc export --to hf` folders.

Each export's progc_eval.json holds the loss of every validation batch. For each export this
prints the loss, the batches and windows it averages, and its standard error (sample sd of the
batch losses over sqrt(batches)): the noise of one evaluation against the whole held-out
distribution. For each pair of exports of the same run family (same windows), it prints the
paired standard error of their difference, which is what a gap between two runs carries.

Usage: scripts/eval-noise.py EXPORT_DIR [EXPORT_DIR ...]
"""
import json
import math
import sys


def load(path):
    with open(f"{path}/progc_eval.json") as f:
        ev = json.load(f)
    losses = ev.get("batch_losses")
    if not losses:
        sys.exit(f"error: {path}/progc_eval.json has no batch_losses (export it with a newer progc)")
    return ev, losses


def se(xs):
    n = len(xs)
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return mean, sd / math.sqrt(n)


def main():
    dirs = sys.argv[1:]
    if not dirs:
        sys.exit(__doc__)
    runs = [(d, *load(d)) for d in dirs]
    for d, ev, losses in runs:
        mean, err = se(losses)
        windows = len(losses) * ev["sequences"]
        print(f"{d}: val {mean:.4f} over {len(losses)} batches ({windows} windows of "
              f"{ev['context']} tokens), standard error {err:.4f}")
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            (a, ea, la), (b, eb, lb) = runs[i], runs[j]
            if ea["batches"] != eb["batches"]:
                print(f"{a} - {b}: different windows, not paired")
                continue
            mean, err = se([x - y for x, y in zip(la, lb)])
            print(f"{a} - {b}: {mean:+.4f}, paired standard error {err:.4f}")


if __name__ == "__main__":
    main()
