"""Checks a `fedssl export --format torch` folder with PyTorch: the module in it builds the
encoder, the state dict loads with strict=True (every name and shape, nothing missing or
extra), and the features PyTorch computes for the reference inputs match fedssl's.

    python check_torch_export.py FOLDER [TOLERANCE]

Prints one JSON line; exits 1 when the features differ by more than TOLERANCE (1e-4).
"""
import importlib.util
import json
import os
import sys

import torch
from safetensors.torch import load_file


def main():
    folder = sys.argv[1]
    tol = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-4
    spec = importlib.util.spec_from_file_location(
        "fedssl_encoder", os.path.join(folder, "fedssl_encoder.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Encoder()
    state = load_file(os.path.join(folder, "encoder.safetensors"))
    model.load_state_dict(state, strict=True)
    model.eval()
    ref = load_file(os.path.join(folder, "reference.safetensors"))
    with torch.no_grad():
        out = model(ref["inputs"])
    diff = (out - ref["features"]).abs().max().item()
    scale = ref["features"].abs().max().item()
    print(json.dumps({
        "folder": folder,
        "kind": model.config["kind"],
        "tensors": len(state),
        "samples": int(ref["inputs"].shape[0]),
        "max_abs_diff": diff,
        "max_abs_feature": scale,
        "torch": torch.__version__,
    }))
    sys.exit(0 if diff <= tol else 1)


if __name__ == "__main__":
    main()
