"""Whether capping the kernel libraries' instruction sets slows each precision as an older CPU would.

    python -m bench.isa_caps                 # the three CPU classes, batch 32
    python -m bench.isa_caps --each-variable # also one variable at a time
    python -m bench.isa_caps --tiny          # a small batch: checks the script runs

Only an AMX machine can be had here, so the older CPU classes are emulated on it by capping
what each kernel library may use: oneDNN (PyTorch's bf16 matrix products) reads
ONEDNN_MAX_CPU_ISA, MKL (fp32 matrix products) MKL_ENABLE_INSTRUCTIONS, FBGEMM (dynamic
int8 Linear layers) FBGEMM_ENABLE_INSTRUCTIONS, and PyTorch's own kernels (LayerNorm, GELU,
softmax) ATEN_CPU_CAPABILITY. Each class runs in a process of its own, since the libraries
read these variables once. An emulation keeps this chip's caches, clocks and memory, so it
says how the kernels compare, not what a real CPU of that class would reach.
For each class it times one Linear layer of the image tower (50 tokens x 32 images, 768 to
3072) and the whole image tower per precision, the precisions taking turns.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ISA_CAP_VARIABLES, machine, markdown_table, write_results

CLASSES: dict[str, dict[str, str]] = {
    "this chip, no caps": {},
    "AVX-512 BF16 without AMX (emulated)": {
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16", "MKL_ENABLE_INSTRUCTIONS": "AVX512_E3",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX512_E1", "ATEN_CPU_CAPABILITY": "avx512"},
    "AVX2 only (emulated)": {
        "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}

# A cap can only take instructions away: ATEN_CPU_CAPABILITY=avx512 on a CPU without AVX-512
# makes PyTorch run instructions the CPU lacks (it dies of SIGILL). A class is emulated only
# on a CPU that has the flag it names.
NEEDS = {"AVX-512 BF16 without AMX (emulated)": "avx512f", "AVX2 only (emulated)": "avx2",
         "only ATEN_CPU_CAPABILITY=avx2": "avx2"}

# One variable at a time, lowest setting: which library governs which precision.
SINGLE_CAPS: dict[str, dict[str, str]] = {
    f"only {name}={value}": {name: value} for name, value in (
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16"), ("ONEDNN_MAX_CPU_ISA", "AVX2"),
        ("MKL_ENABLE_INSTRUCTIONS", "AVX2"), ("FBGEMM_ENABLE_INSTRUCTIONS", "AVX2"),
        ("ATEN_CPU_CAPABILITY", "avx2"))}


def measure(batch_size: int, rounds: int) -> dict[str, Any]:
    """In this process (caps already set): ms of one Linear layer and images/s of the tower, per precision."""
    import copy

    import numpy as np
    import torch

    from clipseek.clip.checkpoint import LoadPolicy
    from clipseek.clip.network import build_network, convert, embed_pixels, runnable_precisions
    from clipseek.clip.probe import precision_copies

    # onnx-int8 is left out: the caps reach PyTorch's kernel libraries, not ONNX Runtime's.
    precisions = [p for p in runnable_precisions("cpu") if p != "onnx-int8"]
    layer = torch.nn.Linear(768, 3072).eval()
    layers = {p: layer if p == "fp32" else convert(torch.nn.Sequential(copy.deepcopy(layer)), p)
              for p in precisions}
    tokens = torch.randn(50 * batch_size, 768)
    model, _ = build_network(LoadPolicy(arch="ViT-B-32", random=True), "cpu")
    towers = precision_copies(model, precisions)
    pixels = np.random.default_rng(0).standard_normal((batch_size, 3, 224, 224)).astype(np.float32)
    layer_s, tower_s = dict.fromkeys(precisions, float("inf")), dict.fromkeys(precisions, float("inf"))
    with torch.inference_mode():
        inputs = {p: tokens.bfloat16() if p == "bf16" else tokens for p in precisions}
        for p in precisions:  # warm-up: first calls allocate and pick kernels
            layers[p](inputs[p])
            embed_pixels(towers[p], pixels, "cpu")
        for _ in range(rounds):
            for p in precisions:
                started = time.perf_counter()
                layers[p](inputs[p])
                middle = time.perf_counter()
                embed_pixels(towers[p], pixels, "cpu")
                layer_s[p] = min(layer_s[p], middle - started)
                tower_s[p] = min(tower_s[p], time.perf_counter() - middle)
    return {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "precisions": {p: {"linear_ms": round(1000 * layer_s[p], 2),
                               "tower_images_per_s": round(batch_size / tower_s[p], 2)} for p in precisions}}


def main() -> None:
    """Run every class in a subprocess of its own; write isa-caps.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tiny", action="store_true", help="a quick run that checks the script works")
    parser.add_argument("--each-variable", action="store_true",
                        help="also cap one variable at a time, to see which governs which precision")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    args = parser.parse_args()
    if args.tiny:
        args.batch_size, args.rounds = 2, 1
    if args.child:
        print(json.dumps(measure(args.batch_size, args.rounds)))
        return
    results: dict[str, Any] = {}
    flags = set(machine()["cpu_flags"])
    for name, caps in {**CLASSES, **(SINGLE_CAPS if args.each_variable else {})}.items():
        needed = NEEDS.get(name)
        if needed is not None and needed not in flags:
            print(f"{name}: skipped, this CPU has no {needed}", flush=True)
            results[name] = {"caps": caps, "skipped": f"this CPU has no {needed}", "precisions": {}}
            continue
        # The parent's own caps never leak into a class that does not set them.
        env = {k: v for k, v in os.environ.items() if k not in ISA_CAP_VARIABLES}
        print(f"{name}…", flush=True)
        out = subprocess.run([sys.executable, "-m", "bench.isa_caps", "--child", "--batch-size",
                              str(args.batch_size), "--rounds", str(args.rounds)],
                             env={**env, **caps}, check=True, capture_output=True, text=True)
        results[name] = {"caps": caps, **json.loads(out.stdout.strip().splitlines()[-1])}
    precisions = list(results[next(iter(CLASSES))]["precisions"])
    rows = []
    for name, r in results.items():
        cells = ([r["precisions"].get(p, {}).get("linear_ms", "-") for p in precisions]
                 + [r["precisions"].get(p, {}).get("tower_images_per_s", "-") for p in precisions])
        if "skipped" in r:
            cells = [f"skipped: {r['skipped']}"] + ["-"] * (len(cells) - 1)
        rows.append([name, " ".join(f"{k}={v}" for k, v in r["caps"].items()) or "-", *cells])
    table = markdown_table(["CPU class", "caps"] + [f"{p} Linear, ms" for p in precisions]
                           + [f"{p} tower, images/s" for p in precisions], rows)
    md = (f"One Linear layer (768 to 3072, {50 * args.batch_size} tokens) and the ViT-B/32 image tower "
          f"(random weights, batch {args.batch_size}) per precision, fastest of {args.rounds} rounds; "
          f"the capped classes are emulations on this chip:\n\n{table}")
    write_results("isa-caps-tiny" if args.tiny else "isa-caps", {"classes": results}, md, args.out)
    print(md)


if __name__ == "__main__":
    main()
