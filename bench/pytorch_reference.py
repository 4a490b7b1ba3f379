#!/usr/bin/env python3
"""PyTorch reference for `fedssl bench train`.

The same ConvNet-S encoder + projector, NT-Xent loss, batch and Adam settings as fedssl's
local SimCLR step, loaded from the weights and input fedssl exports (safetensors), so
both sides can first be checked to compute the same loss and then be timed.

Usage: pytorch_reference.py --weights W.safetensors --input X.safetensors --threads N
                            --steps S --warmup K --temperature T --lr LR [--profile]
Prints one JSON object on stdout. Exits with code 3 when torch is not installed.
"""
import argparse
import json
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from safetensors.torch import load_file
except ImportError as e:  # the caller reports this plainly
    print(json.dumps({"error": f"torch or safetensors is not available: {e}"}))
    sys.exit(3)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        plan = [(1, 32, 1), (32, 64, 2), (64, 128, 2), (128, 128, 2)]
        self.blocks = nn.ModuleList([Block(i, o, s) for i, o, s in plan])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x.mean(dim=(2, 3))


class SslModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.fc1 = nn.Linear(128, 256)
        self.fc2 = nn.Linear(256, 128)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(self.encoder(x))))


def nt_xent(z1, z2, tau):
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), -1e9)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def load_weights(model, path):
    """Maps fedssl's tensor names onto the PyTorch modules (burn's Linear is [in, out])."""
    w = load_file(path)
    sd = {}
    for i in range(4):
        p = f"encoder.blocks.{i}"
        sd[f"encoder.blocks.{i}.conv.weight"] = w[f"{p}.conv.weight"]
        sd[f"encoder.blocks.{i}.bn.weight"] = w[f"{p}.bn.gamma"]
        sd[f"encoder.blocks.{i}.bn.bias"] = w[f"{p}.bn.beta"]
        sd[f"encoder.blocks.{i}.bn.running_mean"] = w[f"{p}.bn.running_mean"]
        sd[f"encoder.blocks.{i}.bn.running_var"] = w[f"{p}.bn.running_var"]
        sd[f"encoder.blocks.{i}.bn.num_batches_tracked"] = torch.tensor(0)
    for fc in ("fc1", "fc2"):
        sd[f"{fc}.weight"] = w[f"projector.{fc}.weight"].t().contiguous()
        sd[f"{fc}.bias"] = w[f"projector.{fc}.bias"]
    model.load_state_dict(sd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--forward-batches", type=int, default=20)
    ap.add_argument("--temperature", type=float, default=0.2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--profile", action="store_true",
                    help="also print torch.profiler's per-operator table of 3 steps to stderr")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = SslModel()
    load_weights(model, a.weights)
    x = load_file(a.input)["x"]  # [2N, 1, 28, 28]: view 1 then view 2
    n = x.shape[0] // 2

    # 1. Loss on the exported weights and input (train-mode BatchNorm), before any step.
    model.train()
    with torch.no_grad():
        z = model(x)
        loss0 = nt_xent(z[:n], z[n:], a.temperature).item()

    # 2. Training steps: forward both views, loss, backward, Adam step.
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, eps=1e-8)

    def step():
        opt.zero_grad(set_to_none=True)
        z = model(x)
        loss = nt_xent(z[:n], z[n:], a.temperature)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    train_s = time.perf_counter() - t

    # 3. Forward only: the encoder in eval mode on one view.
    enc = model.encoder.eval()
    xb = x[:n].contiguous()
    with torch.no_grad():
        for _ in range(2):
            enc(xb)
        t = time.perf_counter()
        for _ in range(a.forward_batches):
            enc(xb)
        fwd_s = time.perf_counter() - t

    if a.profile:
        from torch.profiler import profile, ProfilerActivity
        model.train()  # the forward-only part left the encoder in eval mode
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12),
              file=sys.stderr)

    print(json.dumps({
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "initial_loss": loss0,
        "train_images_per_s": n * a.steps / train_s,
        "forward_images_per_s": n * a.forward_batches / fwd_s,
    }))


if __name__ == "__main__":
    main()
