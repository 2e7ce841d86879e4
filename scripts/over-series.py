#!/usr/bin/env python3
"""The over-trained series (`over_series` in std/paper.prog) read length by length.

progc's report compares every run with one reference, the longest fixed run. This script pairs
each run with the fixed run of its own length instead (a frontier point of the experiment) and
prints, per length: tokens per parameter, epochs, the depth margin (fixed 1 - fixed 6), the
grown run's gap to fixed 6, the share of the margin it recovers, the speedups at matched loss
(from progc's report: the frontier is the fixed recipe at every length), and the gains of the
last 20% of the run (the fixed run's from 0.8T to T; the grown run's from its growth to T).
It fits the share against log10(tokens per parameter) and says where the fit would reach 90%
and 100%, with the range the slope's 95% interval allows; with --plots DIR it draws the share
and the speedups against tokens per parameter, and the two gains against each other.

Usage: scripts/over-series.py EXPERIMENT_DIR [--plots DIR] [--prefix over_series]
Needs numpy and matplotlib for --plots (a venv: pip install numpy matplotlib).
"""
import argparse
import json
import math
import os
import sys

# Training part of data/big/corpus.txt (34,842,733 bytes, 1% held out for validation).
TRAIN_BYTES = 34_842_733 * 0.99


def params(model):
    """GPT-2's parameter count at full depth, embeddings included (progc's `params total`)."""
    d, v, c, depth, r = model["width"], model["vocab"], model["context"], model["depth"], model[
        "mlp_ratio"]
    block = (3 + 1 + 2 * r) * d * d + (3 + 1 + r + 1) * d + 4 * d
    return v * d + c * d + depth * block + 2 * d


def read_rows(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def val_at(rows, step):
    """The last validation loss measured at or before `step`."""
    vals = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    before = [v for s, v in vals if s <= step]
    return before[-1] if before else None


def speedup_text(s):
    if s is None:
        return "above the frontier"
    exact = s.get("exact") if isinstance(s, dict) else s
    if exact is None:
        return "above the frontier"
    bound = ">= " if isinstance(s, dict) and s.get("bound") else ""
    return f"{bound}{exact:.2f}x"


def speedup_value(s):
    if isinstance(s, dict):
        return s.get("exact")
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--plots")
    ap.add_argument("--prefix", default="over_series")
    a = ap.parse_args()

    report = json.load(open(os.path.join(a.dir, "report.json")))
    runs = {}
    for r in report["runs"]:
        name = r["run"].split("@")[0]
        rd = os.path.join(a.dir, r["run"])
        plan = json.load(open(os.path.join(rd, "run.json")))
        spec = plan["spec"]
        runs[name] = {
            "final": r["final_val_loss"],
            "steps": spec["total_steps"],
            "growth": r["growth_steps"][0] if r["growth_steps"] else None,
            "speedup": r.get("speedup_at_matched_loss"),
            "rows": read_rows(os.path.join(rd, "metrics.jsonl")),
            "spec": spec,
        }
    fixed = {v["steps"]: v for k, v in runs.items() if k.startswith("over_fixed")}
    depth1 = {v["steps"]: v for k, v in runs.items() if k.startswith("over_depth1")}
    copy = {v["steps"]: v for k, v in runs.items() if k.startswith("over_copy")}
    lengths = sorted(set(fixed) & set(depth1) & set(copy))
    if not lengths:
        sys.exit("error: no length has its fixed, 1-layer and copy runs finished yet")
    any_fixed = fixed[lengths[0]]["spec"]
    n = params(any_fixed["model"])
    tps = any_fixed["batch"]["sequences"] * any_fixed["batch"]["context"]

    table = []
    for L in lengths:
        f, o, c = fixed[L], depth1[L], copy[L]
        margin = o["final"] - f["final"]
        gap = c["final"] - f["final"]
        share = (o["final"] - c["final"]) / margin if margin else float("nan")
        g = c["growth"]
        fixed_gain = val_at(f["rows"], int(0.8 * L) - 1) - f["final"]
        grown_gain = val_at(c["rows"], g - 1) - c["final"]
        table.append({
            "steps": L,
            "tpp": L * tps / n,
            "epochs": L * tps / TRAIN_BYTES,
            "fixed": f["final"], "depth1": o["final"], "copy": c["final"],
            "margin": margin, "gap": gap, "gap_pct": 100 * gap / f["final"], "share": share,
            "speedup_copy": c["speedup"], "speedup_depth1": o["speedup"],
            "fixed_gain": fixed_gain, "grown_gain": grown_gain,
        })

    print(f"parameters {n:,} (full depth, embeddings included); {tps} tokens per step\n")
    print("| steps | tokens per parameter | epochs | fixed 6 | fixed 1 | 1 -> 6 copy | depth margin "
          "| gap: copy - fixed 6 | share of the margin recovered | speedup at matched loss, "
          "copy | same, fixed 1 | fixed run's gain over its last 20% | grown run's gain "
          "after the growth |")
    print("|" + "---|" * 14)
    for t in table:
        print(f"| {t['steps']} | {t['tpp']:.0f} | {t['epochs']:.2f} | {t['fixed']:.4f} | "
              f"{t['depth1']:.4f} | {t['copy']:.4f} | {t['margin']:+.3f} | {t['gap']:+.3f} "
              f"({t['gap_pct']:+.1f}%) | {100 * t['share']:.0f}% | "
              f"{speedup_text(t['speedup_copy'])} | {speedup_text(t['speedup_depth1'])} | "
              f"{t['fixed_gain']:.3f} | {t['grown_gain']:.3f} |")

    # The share against log10(tokens per parameter), least squares, with the slope's 95%
    # interval (Student t, n - 2 degrees of freedom).
    xs = [math.log10(t["tpp"]) for t in table]
    ys = [t["share"] for t in table]
    k = len(xs)
    if k >= 3:
        mx, my = sum(xs) / k, sum(ys) / k
        sxx = sum((x - mx) ** 2 for x in xs)
        b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
        a0 = my - b * mx
        resid = [y - (a0 + b * x) for x, y in zip(xs, ys)]
        se = math.sqrt(sum(r * r for r in resid) / (k - 2) / sxx)
        tq = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}.get(k - 2, 2.0)
        lo, hi = b - tq * se, b + tq * se
        print(f"\nshare = {a0:.3f} + {b:.3f} log10(tokens per parameter); slope 95% interval "
              f"[{lo:.3f}, {hi:.3f}] per decade ({k} points)")
        for target in (0.9, 1.0):
            def reach(slope):
                # The line through the points' mean with this slope.
                if slope <= 0:
                    return None
                return 10 ** (mx + (target - my) / slope)
            best, far, near = reach(b), reach(lo), reach(hi)
            fmt = lambda v: "never (the share does not rise)" if v is None else f"{v:,.0f}"
            print(f"  {int(target * 100)}% at {fmt(best)} tokens per parameter "
                  f"(range {fmt(near)} to {fmt(far)})")

    if a.plots:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        os.makedirs(a.plots, exist_ok=True)
        from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter
        tpp = [t["tpp"] for t in table]

        def log_ticks(axis):
            # Tick at the series' own points, not at matplotlib's 2x10^k.
            axis.xaxis.set_major_locator(FixedLocator(tpp))
            axis.xaxis.set_major_formatter(ScalarFormatter())
            axis.xaxis.set_minor_formatter(NullFormatter())

        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        ax[0].plot(tpp, [100 * t["share"] for t in table], "o-")
        ax[0].set_xscale("log")
        log_ticks(ax[0])
        ax[0].set_xlabel("tokens per parameter")
        ax[0].set_ylabel("share of the depth margin recovered (%)")
        ax[0].set_title("1 -> 6 copy at 80%")
        for key, label in (("speedup_copy", "1 -> 6 copy"), ("speedup_depth1", "fixed 1 layer")):
            pts = [(t["tpp"], speedup_value(t[key])) for t in table]
            pts = [(x, y) for x, y in pts if y is not None]
            if pts:
                ax[1].plot(*zip(*pts), "o-", label=label)
        ax[1].axhline(1.0, color="gray", lw=0.8)
        ax[1].set_xscale("log")
        log_ticks(ax[1])
        ax[1].set_xlabel("tokens per parameter")
        ax[1].set_ylabel("speedup at matched loss (exact FLOPs)")
        ax[1].set_title("missing point: above the frontier (< 1x)")
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(os.path.join(a.plots, f"{a.prefix}_share_speedup.svg"))
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot([t["fixed_gain"] for t in table], [t["grown_gain"] for t in table], "o")
        for t in table:
            ax.annotate(f"{t['tpp']:.0f}", (t["fixed_gain"], t["grown_gain"]))
        lim = max(max(t["fixed_gain"], t["grown_gain"]) for t in table) * 1.1
        ax.plot([0, lim], [0, lim], color="gray", lw=0.8)
        ax.set_xlabel("fixed 6: val loss gained over its last 20% (nats)")
        ax.set_ylabel("1 -> 6 copy: val loss gained after the growth (nats)")
        ax.set_title("labels: tokens per parameter")
        fig.tight_layout()
        fig.savefig(os.path.join(a.plots, f"{a.prefix}_gains.svg"))
        print(f"\nplots written to {a.plots}/{a.prefix}_share_speedup.svg and _gains.svg")


if __name__ == "__main__":
    main()
