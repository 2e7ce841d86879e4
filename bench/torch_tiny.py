#!/usr/bin/env python3
"""progc's tiny CPU recipes, trained by an independent PyTorch implementation (CPU, eager, f32).

Recipes (`--recipe`):
  tiny        examples/tiny.prog: depth 0 for steps 0..1199, grown at step 1200 to depth 6 with
              random blocks placed on top; old parameters keep their AdamW moments, the new
              ones start fresh (their own bias correction); the LR is a function of the global
              step, so nothing restarts at the growth.
  tiny_fixed  std/paper.prog `tiny_fixed` (= `tiny_base`): depth 6 throughout.
Both: GPT-2 width 128, 4 heads, context 128, MLP ratio 4, byte tokenizer (vocab 256) on
data/emma.txt, batch 8 x 128, 1500 steps, AdamW(lr 2e-3, betas (0.9, 0.95), eps 1e-8, weight
decay 0.01 on the 2-D weights and both embeddings, none on biases and LayerNorms, no LR
multipliers, no clipping), WSD (30 warmup steps ramping (s+1)/30, constant, the last 150 steps
decay linearly to 0: factor 1 - (s - 1350 + 1)/150), eval every 100 steps on 4 fixed
validation batches. `--steps N` stops after N steps (like `progc run --stop-after N`): the
schedule is still the full run's.

What is reproduced exactly from progc (src/exec/network/model.rs, grow.rs, data.rs, rng.rs, train.rs,
optim.rs, plan/schedule.rs), so both engines train the same thing and their losses can be put
side by side:
  - init: every parameter named as in progc (`wte.weight`, `blocks.3.attn.qkv.weight`,
    `grow.blocks.0.mlp.fc.weight` for grown blocks, ...) is drawn from SplitMix64 seeded by
    FNV-1a(seed little-endian bytes ++ name), Box-Muller in f64, cast to f32, in progc's
    `[d_in, d_out]` layout (`y = x W + b`; stored transposed in nn.Linear). Normal 0.02 for the
    embeddings and input weights, 0.02 / sqrt(2 * 6) for the output projections (attn.out,
    mlp.proj), zero biases, LayerNorm ones / zeros. Model seed derive_seed(seed, 1), growth
    seed derive_seed(seed, 2^40 + 1200). The sines/cosines/logs run in numpy; glibc's and
    numpy's may differ in the last f64 bit, which after the cast to f32 changes a value with
    probability ~1e-8 (checked to give bit-identical f32 tensors here);
  - data: the last round(10%) of the byte stream is the validation region; each training
    sequence starts at xoshiro256**(seeded by splitmix64 from derive_seed(seed, 2)).below(
    len(train) - 128) (Lemire's multiply-and-reject), 8 per step, in progc's order; validation
    is progc's fixed set of 4 x 8 non-overlapping windows spread evenly over the region;
  - evaluation points: after the update of every 100th step and the last one, and right after
    the growth (before step 1200's update) -- the growth spike.
What is not bit-identical: the float arithmetic (MKL/oneDNN matmuls, PyTorch's fused CPU AdamW,
SDPA's attention kernel, reduction orders), so the two runs drift apart by rounding only: the
training losses agree to ~1e-6 for the first steps and the depth-0 segment of `tiny` to 1e-5
(validation losses equal to 4 decimals up to and including the growth); final validation
losses agreed within 2e-4 (tiny: 2.3995 vs progc 2.3997) and 1e-3 (tiny_fixed at step 299).

Timing: `wall_s` runs from the start of main() (after the interpreter starts) to the end;
`startup_s` is its part before the first step: importing torch, reading the data, the init and
building torch.optim.AdamW, whose constructor imports torch._dynamo (seconds on a small CPU).
tok/s per depth segment counts training steps only (forward, backward, AdamW and the
loss read-back), excluding evaluation and -- as progc's metrics do -- the first step of each
segment (allocation warm-up); `warmup_s` reports those first steps.

Prints one line per evaluation (`step S  train L  val V`) on stderr, then exactly one JSON line
on stdout:
  {"engine":"torch","recipe":...,"steps":...,"final_train":...,"final_val":...,"wall_s":...,
   "tok_per_s_by_depth":{"0":...,"6":...}, ...}
"""

import argparse
import json
import math
import os
import sys
import time

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15

WIDTH, HEADS, CONTEXT, MLP_RATIO, VOCAB, FULL_DEPTH = 128, 4, 128, 4, 256, 6
SEQS = 8
TOTAL_STEPS = 1500
PEAK_LR, BETAS, EPS, WEIGHT_DECAY = 2e-3, (0.9, 0.95), 1e-8, 0.01
WARMUP_STEPS = round(0.02 * TOTAL_STEPS)  # 30
DECAY_STEPS = round(0.10 * TOTAL_STEPS)  # 150
EVAL_EVERY, EVAL_BATCHES = 100, 4
INIT_STD = 0.02
VAL_FRACTION = 0.10
SALT_MODEL, SALT_DATA, SALT_GROW = 1, 2, 1 << 40

RECIPES = {
    # name: (start depth, [(growth step, to depth)])
    "tiny": (0, [(round(0.8 * TOTAL_STEPS), FULL_DEPTH)]),
    "tiny_fixed": (FULL_DEPTH, []),
}


# ---------------------------------------------------------------------------------------------
# progc's random streams (src/exec/network/rng.rs, src/exec/network/model.rs, src/exec/jobs/train.rs)


def splitmix64(state):
    """One splitmix64 step: returns (new state, output)."""
    state = (state + GAMMA) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def derive_seed(seed, salt):
    _, out = splitmix64(seed ^ ((salt * GAMMA) & MASK))
    return out


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


class Xoshiro:
    """xoshiro256** seeded through splitmix64, as progc's `Rng`."""

    def __init__(self, seed):
        s, sm = [], seed
        for _ in range(4):
            sm, out = splitmix64(sm)
            s.append(out)
        self.s = s if any(s) else [1, 0, 0, 0]

    def next_u64(self):
        s = self.s
        result = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def below(self, n):
        if n == 0:
            return 0
        threshold = ((1 << 64) - n) % n
        while True:
            m = self.next_u64() * n
            if (m & MASK) >= threshold:
                return m >> 64


def fnv1a(seed, key):
    h = 0xCBF29CE484222325
    for b in seed.to_bytes(8, "little") + key.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def host_normal(np, shape, std, seed, key):
    """progc's `host_init(Normal(std), shape, seed, key)`: f32, row-major `shape`."""
    n = shape[0] * shape[1]
    pairs = (n + 1) // 2
    u64 = np.uint64
    with np.errstate(over="ignore"):
        k = np.arange(1, 2 * pairs + 1, dtype=u64)
        z = u64(fnv1a(seed, key)) + k * u64(GAMMA)  # SplitMix64 is counter based
        z = (z ^ (z >> u64(30))) * u64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> u64(27))) * u64(0x94D049BB133111EB)
        z = z ^ (z >> u64(31))
    unit = ((z >> u64(11)) + u64(1)).astype(np.float64) / float(1 << 53)  # (0, 1]
    u1, u2 = unit[0::2], unit[1::2]
    r = np.sqrt(-2.0 * np.log(u1))
    a = (2.0 * math.pi) * u2
    out = np.empty(2 * pairs, dtype=np.float64)
    out[0::2] = r * np.cos(a) * std
    out[1::2] = r * np.sin(a) * std
    return out[:n].astype(np.float32).reshape(shape)


def lr_factor(step, total):
    """WSD, linear decay to floor 0 (src/plan/schedule.rs)."""
    decay_start = max(total - DECAY_STEPS, 0)
    if step >= decay_start and DECAY_STEPS > 0:
        p = min((step - decay_start + 1) / DECAY_STEPS, 1.0)
        return 1.0 - p
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    return 1.0


# ---------------------------------------------------------------------------------------------
# Data (src/exec/io/data/)


def load_corpus(np, path):
    tokens = np.frombuffer(open(path, "rb").read(), dtype=np.uint8).astype(np.int64)
    n = len(tokens)
    n_val = int(math.floor(n * VAL_FRACTION + 0.5))  # Rust's f64::round: half away from zero
    return tokens[: n - n_val], tokens[n - n_val :]


def train_starts(n_train, steps, seed):
    """Start offsets `[steps][SEQS]` of the training windows, in progc's order."""
    rng = Xoshiro(derive_seed(seed, SALT_DATA))
    starts = n_train - CONTEXT if n_train > CONTEXT else n_train
    return [[rng.below(starts) for _ in range(SEQS)] for _ in range(steps)]


def validation_starts(n_val):
    window = CONTEXT + 1
    available = n_val // window
    assert available >= SEQS, "validation region smaller than one batch"
    batches = min(EVAL_BATCHES, available // SEQS)
    wanted = batches * SEQS
    return [
        [((k * SEQS + r) * available // wanted) * window for r in range(SEQS)]
        for k in range(batches)
    ]


# ---------------------------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", choices=sorted(RECIPES), default="tiny")
    p.add_argument(
        "--steps",
        "--stop-after",
        dest="steps",
        type=int,
        default=TOTAL_STEPS,
        help="stop after this many global steps; the LR schedule stays the 1500-step run's",
    )
    here = os.path.dirname(os.path.abspath(__file__))
    p.add_argument("--data", default=os.path.join(here, "..", "data", "emma.txt"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--log-every", type=int, default=0, metavar="N",
                   help="also print the training loss of every N-th step (0: evaluations only)")
    a = p.parse_args()
    if not 1 <= a.steps <= TOTAL_STEPS:
        p.error(f"--steps must be in 1..{TOTAL_STEPS}")
    return a


def main():
    t_start = time.perf_counter()
    args = parse_args()
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # nothing random is drawn from torch; set for good measure

    class Block(nn.Module):
        def __init__(self, seed, key, out_std):
            super().__init__()
            d, h = WIDTH, MLP_RATIO * WIDTH
            self.ln1 = nn.LayerNorm(d, eps=1e-5)
            self.qkv = nn.Linear(d, 3 * d)
            self.out = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d, eps=1e-5)
            self.fc = nn.Linear(d, h)
            self.proj = nn.Linear(h, d)
            with torch.no_grad():
                for lin, name, std in [
                    (self.qkv, "attn.qkv", INIT_STD),
                    (self.out, "attn.out", out_std),
                    (self.fc, "mlp.fc", INIT_STD),
                    (self.proj, "mlp.proj", out_std),
                ]:
                    w = host_normal(np, [lin.in_features, lin.out_features], std, seed,
                                    f"{key}.{name}.weight")
                    lin.weight.copy_(torch.from_numpy(w).t())  # [d_in, d_out] -> [out, in]
                    lin.bias.zero_()
                for ln in (self.ln1, self.ln2):
                    ln.weight.fill_(1.0)
                    ln.bias.zero_()

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
            hd = d // HEADS
            q, k, v = (z.view(b, t, HEADS, hd).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.out(y.transpose(1, 2).reshape(b, t, d))
            return x + self.proj(F.gelu(self.fc(self.ln2(x))))

        def groups(self):
            decay = [m.weight for m in (self.qkv, self.out, self.fc, self.proj)]
            no_decay = [m.bias for m in (self.qkv, self.out, self.fc, self.proj)]
            no_decay += [p for ln in (self.ln1, self.ln2) for p in ln.parameters()]
            return decay, no_decay

    class GPT(nn.Module):
        def __init__(self, depth, seed):
            super().__init__()
            self.wte = nn.Parameter(torch.from_numpy(
                host_normal(np, [VOCAB, WIDTH], INIT_STD, seed, "wte.weight")))
            self.wpe = nn.Parameter(torch.from_numpy(
                host_normal(np, [CONTEXT, WIDTH], INIT_STD, seed, "wpe.weight")))
            ostd = INIT_STD / math.sqrt(2 * max(depth, 1))
            self.blocks = nn.ModuleList(
                Block(seed, f"blocks.{i}", ostd) for i in range(depth))
            self.ln_f = nn.LayerNorm(WIDTH, eps=1e-5)

        def loss(self, idx, targets):
            t = idx.shape[1]
            x = F.embedding(idx, self.wte) + self.wpe[:t]
            for blk in self.blocks:
                x = blk(x)
            logits = self.ln_f(x) @ self.wte.t()  # tied head
            return F.cross_entropy(logits.view(-1, VOCAB), targets.reshape(-1))

        def groups(self):
            decay, no_decay = [self.wte, self.wpe], list(self.ln_f.parameters())
            for blk in self.blocks:
                d, n = blk.groups()
                decay += d
                no_decay += n
            return decay, no_decay

    def adamw_groups(decay, no_decay):
        return [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    start_depth, growths = RECIPES[args.recipe]
    total, end = TOTAL_STEPS, args.steps

    train, val = load_corpus(np, args.data)
    starts = np.asarray(train_starts(len(train), end, args.seed), dtype=np.int64)
    offs = np.arange(CONTEXT + 1, dtype=np.int64)
    train_t = torch.from_numpy(train)
    val_t = torch.from_numpy(val)

    def windows(region, st):
        w = region[torch.from_numpy(np.asarray(st, dtype=np.int64)[:, None] + offs)]
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()

    val_batches = [windows(val_t, st) for st in validation_starts(len(val))]

    model = GPT(start_depth, derive_seed(args.seed, SALT_MODEL))
    opt_kw = dict(lr=PEAK_LR, betas=BETAS, eps=EPS)
    try:
        opt = torch.optim.AdamW(adamw_groups(*model.groups()), fused=True, **opt_kw)
        fused = True
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.AdamW(adamw_groups(*model.groups()), foreach=True, **opt_kw)
        fused = False

    @torch.no_grad()
    def evaluate():
        return sum(model.loss(x, y).item() for x, y in val_batches) / len(val_batches)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    seg_time, seg_steps = {}, {}  # depth -> timed seconds / steps (first step of a segment out)
    warmup_s = eval_s = 0.0
    first_of_segment = True
    history = []
    train_loss = val_loss = float("nan")
    tps = SEQS * CONTEXT
    t_loop = time.perf_counter()
    for s in range(end):
        post_growth_val = None
        for at, to in growths:
            if at == s:
                t0 = time.perf_counter()
                from_depth = len(model.blocks)
                gseed = derive_seed(args.seed, SALT_GROW + s)
                ostd = INIT_STD / math.sqrt(2 * max(to, 1))
                new = [Block(gseed, f"grow.blocks.{from_depth + j}", ostd)
                       for j in range(to - from_depth)]
                model.blocks.extend(new)  # placement: top
                d, n = [], []
                for blk in new:
                    bd, bn = blk.groups()
                    d += bd
                    n += bn
                for g in adamw_groups(d, n):  # fresh moments for the new parameters only
                    opt.add_param_group(g)
                post_growth_val = evaluate()
                log(f"step {s}: grew depth {from_depth} -> {to} (random), "
                    f"val loss {post_growth_val:.4f}")
                warmup_s += time.perf_counter() - t0
                first_of_segment = True

        t0 = time.perf_counter()
        lr = PEAK_LR * lr_factor(s, total)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = windows(train_t, starts[s])
        loss = model.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        train_loss = loss.item()
        dt = time.perf_counter() - t0
        depth = len(model.blocks)
        if first_of_segment:
            warmup_s += dt
            first_of_segment = False
        else:
            seg_time[depth] = seg_time.get(depth, 0.0) + dt
            seg_steps[depth] = seg_steps.get(depth, 0) + 1
        if not math.isfinite(train_loss):
            log(f"training diverged at step {s}: loss {train_loss}")
            return 1

        need_eval = (s + 1) % EVAL_EVERY == 0 or s + 1 == total or any(
            at == s + 1 for at, _ in growths)
        v = post_growth_val
        if v is None and need_eval:
            t1 = time.perf_counter()
            v = evaluate()
            eval_s += time.perf_counter() - t1
        if v is None and args.log_every > 0 and (s + 1) % args.log_every == 0:
            log(f"step {s:5d}  depth {depth}  lr {lr:.3e}  train {train_loss:.6f}")
        if v is not None:
            val_loss = v
            history.append({"step": s, "depth": depth, "lr": lr, "train_loss": train_loss,
                            "val_loss": v})
            log(f"step {s:5d}  depth {depth}  lr {lr:.3e}  train {train_loss:.4f}  val {v:.4f}")

    t_end = time.perf_counter()
    wall = t_end - t_start
    out = {
        "engine": "torch",
        "recipe": args.recipe,
        "steps": end,
        "final_train": train_loss,
        "final_val": val_loss,
        "wall_s": wall,
        "tok_per_s_by_depth": {
            str(d): seg_steps[d] * tps / seg_time[d] for d in sorted(seg_time) if seg_time[d] > 0
        },
        "startup_s": t_loop - t_start,  # imports, data, init, optimizer (torch._dynamo import)
        "loop_s": t_end - t_loop,
        "train_s": sum(seg_time.values()),
        "warmup_s": warmup_s,
        "eval_s": eval_s,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "fused_adamw": fused,
        "evals": history,
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
