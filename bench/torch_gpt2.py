#!/usr/bin/env python3
"""Throughput reference: the same GPT-2 as progc's, trained in PyTorch on random tokens.

Model: token + learned position embeddings, `depth` pre-LN blocks (causal self-attention via
F.scaled_dot_product_attention, GELU MLP with ratio 4), final LayerNorm, LM head tied to the
token embedding; nanoGPT init (normal 0.02, residual output projections 0.02 / sqrt(2 depth),
zero biases). Optimizer: AdamW with nanoGPT grouping (weight decay on 2-D weights only), fused
on CUDA. Depth 0 is allowed (embeddings -> final LayerNorm -> head).

Only the steps after `--warmup-steps` are timed (CUDA is synchronized around them), so compile
and autotuning time stay out of the figure. Prints exactly one JSON line on stdout:
  {"engine": "torch", ..., "tok_per_s": ...}
Exits 0 with `torch not installed: skipped` when torch is absent.
"""

import argparse
import json
import math
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--depth", type=int, default=2, help="number of transformer blocks (>= 0)")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--batch", type=int, default=8, help="sequences per step")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.depth < 0 or min(a.width, a.heads, a.context, a.vocab, a.batch) < 1 or a.steps < 1:
        p.error("sizes must be positive (depth may be 0) and --steps at least 1")
    if a.warmup_steps < 0:
        p.error("--warmup-steps must be >= 0")
    if a.width % a.heads:
        p.error(f"--heads {a.heads} must divide --width {a.width}")
    return a


def main():
    args = parse_args()
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError:
        print("torch not installed: skipped")
        return 0

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    torch.manual_seed(args.seed)

    class Block(nn.Module):
        def __init__(self, d, h):
            super().__init__()
            self.h = h
            self.ln1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.attn_proj = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d)
            self.fc = nn.Linear(d, 4 * d)
            self.mlp_proj = nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
            q, k, v = (z.view(b, t, self.h, d // self.h).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(b, t, d))
            return x + self.mlp_proj(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self, a):
            super().__init__()
            self.wte = nn.Embedding(a.vocab, a.width)
            self.wpe = nn.Embedding(a.context, a.width)
            self.blocks = nn.ModuleList(Block(a.width, a.heads) for _ in range(a.depth))
            self.ln_f = nn.LayerNorm(a.width)
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, mean=0.0, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
            proj_std = 0.02 / math.sqrt(2 * max(a.depth, 1))
            for blk in self.blocks:
                nn.init.normal_(blk.attn_proj.weight, mean=0.0, std=proj_std)
                nn.init.normal_(blk.mlp_proj.weight, mean=0.0, std=proj_std)

        def forward(self, idx, targets):
            pos = torch.arange(idx.shape[1], device=idx.device)
            x = self.wte(idx) + self.wpe(pos)
            for blk in self.blocks:
                x = blk(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
            return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))

    model = GPT(args).to(device)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt_kwargs = dict(lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    if args.device == "cuda":
        opt_kwargs["fused"] = True
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        **opt_kwargs,
    )
    step_fn = torch.compile(model) if args.compile else model

    gen = torch.Generator(device=device).manual_seed(args.seed)
    batches = [
        torch.randint(0, args.vocab, (args.batch, args.context + 1), device=device, generator=gen)
        for _ in range(4)
    ]
    use_bf16 = args.dtype == "bf16"

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    def train_step(i):
        tokens = batches[i % len(batches)]
        with torch.autocast(device_type=args.device, dtype=torch.bfloat16, enabled=use_bf16):
            loss = step_fn(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t_warm = time.perf_counter()
    for i in range(args.warmup_steps):
        train_step(i)
    sync()
    warmup_s = time.perf_counter() - t_warm

    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = train_step(args.warmup_steps + i)
    sync()
    elapsed = time.perf_counter() - t0

    tokens_per_step = args.batch * args.context
    result = {
        "engine": "torch",
        "torch": torch.__version__,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "depth": args.depth,
        "width": args.width,
        "heads": args.heads,
        "context": args.context,
        "vocab": args.vocab,
        "batch": args.batch,
        "dtype": args.dtype,
        "compile": args.compile,
        "params": params,
        "warmup_steps": args.warmup_steps,
        "steps": args.steps,
        "warmup_s": round(warmup_s, 4),
        "elapsed_s": round(elapsed, 4),
        "step_ms": round(1000.0 * elapsed / args.steps, 3),
        "final_loss": round(float(loss.item()), 4),
        "tok_per_s": round(tokens_per_step * args.steps / elapsed, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
