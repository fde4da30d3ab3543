"""Shared pieces of the benchmarks: the machine description, percentiles, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

# What caps the instruction sets of oneDNN (bf16 matrix products), MKL (fp32 ones), FBGEMM
# (dynamic int8 Linear layers) and PyTorch's own kernels (see bench/isa_caps.py).
ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "FBGEMM_ENABLE_INSTRUCTIONS",
                     "ATEN_CPU_CAPABILITY")


def machine() -> dict[str, Any]:
    """CPU, cores, GPU and library versions, written next to every result."""
    import numpy
    import PIL
    import torch

    cpu = platform.processor() or "unknown"
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("unknown", platform.processor()):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                # The flags that decide which kernels run: bf16 and AMX tiles, AVX-512, VNNI.
                flags = sorted(f for f in line.split(":", 1)[1].split()
                               if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_flags": flags,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        # Caps on the kernel libraries' instruction sets: a capped run emulates an older CPU
        # class on this chip, and must never be mistaken for a run on that class.
        "isa_caps": {name: os.environ.get(name) for name in ISA_CAP_VARIABLES},
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
    }


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95 and p99 of a list of milliseconds."""
    ordered = sorted(samples_ms)
    if not ordered:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": round(statistics.median(ordered), 3), "p95": round(at(0.95), 3),
            "p99": round(at(0.99), 3)}


def markdown_table(headers: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, data: dict[str, Any], markdown: str, out: Path | None = None) -> Path:
    """Write `<name>.json` and `<name>.md` into the results folder; return the JSON path."""
    folder = out or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine(), **data}
    (folder / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    caps = {k: v for k, v in data["machine"].get("isa_caps", {}).items() if v}
    emulation = ("; EMULATION: instruction sets capped by "
                 + ", ".join(f"{k}={v}" for k, v in caps.items())
                 + " (same chip, caches and clocks)") if caps else ""
    header = f"Machine: {data['machine']['cpu']} ({' '.join(data['machine']['cpu_flags'])}), " \
             f"{data['machine']['cores']} cores, GPU: " \
             f"{data['machine']['gpu'] or 'none'}; torch {data['machine']['torch']}; " \
             f"{data['machine']['date']}{emulation}\n\n"
    (folder / f"{name}.md").write_text(header + markdown + "\n")
    return folder / f"{name}.json"


def measured_precision(settings: Any, *, measure: bool = True) -> str:
    """Measure `auto`'s choice for this machine now, in this process's encoder; return it.

    A fresh home serves in a safe precision until a background process has measured: a
    benchmark that times the model measures first, so it times the precision users get.
    `measure=False` (a tiny run, which checks that the script runs and times nothing) keeps
    the safe precision: measuring takes a minute or more, which each tiny run paid.
    """
    from clipseek.context import shared_encoder

    encoder = shared_encoder(settings)
    if measure:
        encoder.measure_now()
    else:
        encoder.load()
    return encoder.precision


def shared_model_cache() -> dict[str, str]:
    """CLIPSEEK_MODEL_CACHE where the caller set it, for a benchmark's scratch home to use.

    A scratch home starts with an empty model cache, so each benchmark that measures `auto`
    exports the ONNX towers again (seconds to a minute each); `make bench-tiny` points its
    runs at one folder, where the first export is kept (by checksum) and the others read it.
    """
    folder = os.environ.get("CLIPSEEK_MODEL_CACHE")
    return {"CLIPSEEK_MODEL_CACHE": folder} if folder else {}


@contextmanager
def scratch_home() -> Iterator[Path]:
    """A temporary CLIPSEEK_HOME outside any home folder (the embedded server needs that)."""
    with tempfile.TemporaryDirectory(prefix="clipseek-bench-", dir="/tmp") as folder:
        yield Path(folder)


def _tree_pss_kib(root_pid: int) -> int:
    """Proportional set size (KiB) of `root_pid` and its children: shared memory counted once."""
    pids = [root_pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The parent pid is the 4th field after the parenthesised command name.
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == root_pid:
                    pids.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


@contextmanager
def peak_memory(root_pid: int | None, every_s: float = 0.5) -> Iterator[dict[str, float]]:
    """Sample the memory of a process tree (a PostgreSQL server: postmaster, backends, parallel
    workers) while the block runs; the dict gets `peak_mib` and `before_mib` on exit."""
    out: dict[str, float] = {}
    if root_pid is None:
        yield out
        return
    stop = threading.Event()
    peak = [0]

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_pss_kib(root_pid))
            stop.wait(every_s)

    out["before_mib"] = round(_tree_pss_kib(root_pid) / 1024, 1)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["peak_mib"] = round(peak[0] / 1024, 1)


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the PostgreSQL server running on `pgdata` (None when it is not ours to see)."""
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None

