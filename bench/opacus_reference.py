#!/usr/bin/env python3
"""PyTorch + Opacus reference for `fedssl bench dpsgd`.

The same GroupNorm ConvNet-S encoder and reconstruction head (denoising autoencoder: the
corrupted image in, the clean one out, mean squared error per image) as fedssl's DP-SGD
step, loaded from the weights and batch fedssl exports (safetensors), so that both sides
are first checked to compute the same loss and then timed on the same batch:
- a non-private step: forward, mean loss, backward, Adam step;
- a DP-SGD step with Opacus (per-sample gradients by hooks, clipped to C, Gaussian noise
  of std σ·C on the sum, divided by the batch size, Adam step).

Usage: opacus_reference.py --weights W --input X --threads N --steps S --warmup K
                           --lr LR --sigma σ --clip C
Prints one JSON object on stdout. Exits with code 3 when torch or opacus is missing.
"""
import argparse
import json
import sys
import time

try:
    import opacus
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer
    from safetensors.torch import load_file
except ImportError as e:  # the caller reports this plainly
    print(json.dumps({"error": f"torch, opacus or safetensors is not available: {e}"}))
    sys.exit(3)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.gn = nn.GroupNorm(8, cout, eps=1e-5)

    def forward(self, x):
        return F.relu(self.gn(self.conv(x)))


class Denoiser(nn.Module):
    def __init__(self):
        super().__init__()
        plan = [(1, 32, 1), (32, 64, 2), (64, 128, 2), (128, 128, 2)]
        self.blocks = nn.ModuleList([Block(i, o, s) for i, o, s in plan])
        self.fc1 = nn.Linear(128, 256)
        self.fc2 = nn.Linear(256, 784)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3)))))


def load_weights(model, path):
    """Maps fedssl's tensor names onto the PyTorch modules (burn's Linear is [in, out])."""
    w = load_file(path)
    sd = {}
    for i in range(4):
        p = f"encoder.blocks.{i}"
        sd[f"blocks.{i}.conv.weight"] = w[f"{p}.conv.weight"]
        sd[f"blocks.{i}.gn.weight"] = w[f"{p}.gn.gamma"]
        sd[f"blocks.{i}.gn.bias"] = w[f"{p}.gn.beta"]
    for fc in ("fc1", "fc2"):
        sd[f"{fc}.weight"] = w[f"decoder.{fc}.weight"].t().contiguous()
        sd[f"{fc}.bias"] = w[f"decoder.{fc}.bias"]
    model.load_state_dict(sd)


def per_sample_loss(model, x, clean):
    return ((model(x) - clean) ** 2).mean(dim=1)


def timed(step, warmup, steps):
    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--clip", type=float, default=1.0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    batch = load_file(a.input)
    x, clean = batch["x"], batch["clean"]  # [B, 1, 28, 28], [B, 784]
    n = x.shape[0]

    model = Denoiser()
    load_weights(model, a.weights)
    with torch.no_grad():
        loss0 = per_sample_loss(model, x, clean).mean().item()

    # Non-private step.
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, eps=1e-8)

    def plain():
        opt.zero_grad(set_to_none=True)
        per_sample_loss(model, x, clean).mean().backward()
        opt.step()

    plain_s = timed(plain, a.warmup, a.steps)

    # DP-SGD step with Opacus, from the same starting weights.
    model = Denoiser()
    load_weights(model, a.weights)
    gsm = GradSampleModule(model, loss_reduction="sum")
    dp_opt = DPOptimizer(
        torch.optim.Adam(gsm.parameters(), lr=a.lr, eps=1e-8),
        noise_multiplier=a.sigma,
        max_grad_norm=a.clip,
        expected_batch_size=n,
        loss_reduction="sum",
    )

    def private():
        dp_opt.zero_grad(set_to_none=True)
        per_sample_loss(gsm, x, clean).sum().backward()
        dp_opt.step()

    dp_s = timed(private, a.warmup, a.steps)
    print(json.dumps({
        "torch_version": torch.__version__,
        "opacus_version": opacus.__version__,
        "threads": torch.get_num_threads(),
        "initial_loss": loss0,
        "batch": n,
        "plain_step_s": plain_s,
        "dpsgd_step_s": dp_s,
    }))


if __name__ == "__main__":
    main()
