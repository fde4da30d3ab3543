"""Which precision the model runs in: what this machine can run, and for `auto` the fastest accurate one.

`auto` times each precision the machine can run on a real batch, keeps those whose embeddings
agree with fp32, takes the fastest, and remembers the choice in CLIPSEEK_HOME under a key made
of the CPU model, the CPU flags that decide the kernels, the PyTorch version and the model, so
later starts on the same machine are instant and a home moved to another CPU measures again.

Measuring (and exporting an ONNX tower) takes one to a few minutes, so on a machine with no
remembered choice the model serves at once in SAFE_PRECISION while a background process
measures (`measure_once`); the processes that serve then switch to the choice when it lands.
Every precision `auto` keeps agrees with fp32 within the bars below, so embeddings made before
the switch and queries made after it (or the reverse) stay comparable.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clipseek.errors import ConfigError

CACHE_FILE = "precision.json"
# bf16 and fp16 keep the int8-free network and only round: their embeddings must stay this
# close (cosine, every row) to fp32 ones, which keeps rankings the same in practice.
HALF_MIN_COSINE = 0.999
# int8 rounds every linear layer's weights and activations to 256 levels, so its error is
# larger and spread unevenly: the mean over the probe guards the ranking as a whole, the
# minimum the worst photo. 0.995 on average and 0.99 at worst keeps a photo's neighbours in
# a CLIP space where related photos sit 0.2-0.3 apart in cosine; random weights measure
# 0.9998, and real weights with outlier activations may fall below it, which is the point.
INT8_MIN_MEAN_COSINE = 0.995
INT8_MIN_COSINE = 0.99
# What a model serves in until `auto` has measured this machine: fp32, the reference every
# other precision is judged against, is accurate on every CPU; bf16 or int8 might be faster
# but are only known to be accurate for these weights once measured.
SAFE_PRECISION = "fp32"
# Beside the cache file while a process measures: when it started, for doctor and the status page.
MEASURING_FILE = "precision.measuring.json"
# The flags that decide which kernels PyTorch uses for fp32, bf16 and int8 matrix work.
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512_fp16",
                  "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Cpu:
    """The processor as /proc/cpuinfo names it, with the flags in RELEVANT_FLAGS it has."""

    model: str
    flags: tuple[str, ...]


def read_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> Cpu:
    """This machine's processor name and relevant flags ('unknown' where /proc is not there)."""
    model, flags = "unknown", set[str]()
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif name.strip() == "flags" and not flags:
            flags = set(value.split())
    return Cpu(model=model, flags=tuple(f for f in RELEVANT_FLAGS if f in flags))


def machine_key(cpu: Cpu, *, torch_version: str, model_id: str, device: str) -> str:
    """The key a remembered choice is valid for: same CPU, flags, PyTorch, model and device."""
    return f"{cpu.model} [{' '.join(cpu.flags)}] torch {torch_version} {model_id} {device}"


@dataclass(frozen=True)
class Measurement:
    """One precision on the probe: its speed, and how close its embeddings are to fp32's."""

    precision: str
    images_per_s: float
    query_ms: float
    mean_cosine: float
    min_cosine: float
    # Why this precision could not be made for this model (onnx-int8 of a tower ONNX cannot
    # export), in which case nothing was timed; None for a precision that ran.
    refused: str | None = None


# The precisions whose error is int8's: PyTorch's own, and ONNX Runtime's image tower.
INT8_PRECISIONS = ("int8", "onnx-int8")


def accurate_enough(m: Measurement) -> bool:
    """Whether a precision's embeddings agree with fp32's closely enough to be used."""
    if m.refused is not None:
        return False
    if m.precision in INT8_PRECISIONS:
        return m.mean_cosine >= INT8_MIN_MEAN_COSINE and m.min_cosine >= INT8_MIN_COSINE
    return m.min_cosine >= HALF_MIN_COSINE


def _bar(precision: str) -> str:
    if precision in INT8_PRECISIONS:
        return f"mean {INT8_MIN_MEAN_COSINE}, min {INT8_MIN_COSINE}"
    return f"min {HALF_MIN_COSINE}"


def choose_fastest_accurate(measurements: Sequence[Measurement]) -> tuple[str, str]:
    """The fastest precision whose embeddings agree with fp32, and a sentence saying why."""
    accurate = [m for m in measurements if m.precision == "fp32" or accurate_enough(m)]
    if not accurate:
        return "fp32", "fp32 is the reference; nothing else was measured."
    best = max(accurate, key=lambda m: m.images_per_s)
    others = ", ".join(f"{m.precision} {m.images_per_s:.1f}" for m in accurate if m is not best)
    reason = f"{best.precision} was the fastest accurate precision at {best.images_per_s:.1f} images/s"
    reason += f" (against {others})" if others else ""
    rejected = [m for m in measurements if m not in accurate]
    for m in rejected:
        if m.refused is not None:
            reason += f"; {m.precision} could not be made for this model ({m.refused})"
            continue
        reason += (f"; {m.precision} ran {m.images_per_s:.1f} images/s but its embeddings agreed with "
                   f"fp32 only to cosine mean {m.mean_cosine:.4f}, min {m.min_cosine:.4f} "
                   f"(needs {_bar(m.precision)})")
    return best.precision, reason + "."


def choose_fastest_accurate_query(measurements: Sequence[Measurement]) -> tuple[str, str]:
    """The accurate precision that embeds one query fastest, and a sentence saying why.

    A search waits for its query's embedding, and one short query runs differently from a
    batch of images (per-layer overhead weighs more than the kernels), so the text tower may
    run in another precision than the images; both agree with fp32, so they stay comparable.
    """
    accurate = [m for m in measurements
                if m.refused is None and (m.precision == "fp32" or accurate_enough(m))]
    if not accurate:
        return "fp32", "fp32 is the reference."
    best = min(accurate, key=lambda m: m.query_ms)
    others = ", ".join(f"{m.precision} {m.query_ms:.1f}" for m in accurate if m is not best)
    return best.precision, (f"{best.precision} embedded a query fastest at {best.query_ms:.1f} ms"
                            + (f" (against {others})" if others else "") + ".")


@dataclass(frozen=True)
class PrecisionChoice:
    """What `auto` chose on one machine, why, and the measurements it chose from."""

    key: str
    precision: str
    reason: str
    measurements: tuple[Measurement, ...]
    measured_at: str
    # The precisions measured, or found impossible for this model: a precision the machine
    # offers since (onnx-int8 after an upgrade) is measured then; one this model cannot be
    # made in (an image tower ONNX cannot export) is not retried at every start; one that
    # failed for the machine's sake (a full disk) is tried again at the next start.
    offered: tuple[str, ...] = ()
    # The precision queries are embedded in (the text tower), and why; "" means `precision`.
    text_precision: str = ""
    text_reason: str = ""

    @property
    def query_precision(self) -> str:
        """The precision of the text tower."""
        return self.text_precision or self.precision

    @classmethod
    def from_json(cls, data: Any) -> PrecisionChoice:
        """Rebuild a choice from its JSON form (KeyError/TypeError/ValueError when malformed)."""
        measurements = tuple(Measurement(**m) for m in data["measurements"])
        # Files written before `offered` existed: what was measured was what was offered.
        offered = data.get("offered") or [m.precision for m in measurements]
        if "text_precision" not in data:
            # Written before queries had their own choice: measured again (in the background).
            offered = []
        return cls(key=str(data["key"]), precision=str(data["precision"]), reason=str(data["reason"]),
                   measurements=measurements, measured_at=str(data["measured_at"]),
                   offered=tuple(str(p) for p in offered), text_precision=str(data.get("text_precision", "")),
                   text_reason=str(data.get("text_reason", "")))


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    choices = data.get("choices") if isinstance(data, dict) else None
    return choices if isinstance(choices, dict) else {}


def cached_choice(path: Path, key: str) -> PrecisionChoice | None:
    """The choice remembered for this machine key, or None (also for a damaged file)."""
    entry = _read_cache(path).get(key)
    try:
        choice = PrecisionChoice.from_json(entry)
    except (KeyError, TypeError, ValueError):
        return None
    return choice if choice.key == key else None


def remember_choice(path: Path, choice: PrecisionChoice) -> None:
    """Add the choice to the cache file, keeping other machines' entries (written atomically)."""
    choices = _read_cache(path)
    choices[choice.key] = asdict(choice)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps({"choices": choices}, indent=2) + "\n")
    os.replace(partial, path)


@contextmanager
def _exclusive(path: Path | None) -> Iterator[None]:
    """Hold a lock beside the cache file, so processes that start together measure once."""
    if path is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(_lock_path(path), "a")  # noqa: SIM115 (held across the yield)
    except OSError:
        yield  # a read-only home: measure without the lock
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def measuring_since(path: Path) -> str | None:
    """When the measurement now under way in this home began, or None when none is running.

    A measuring process holds the cache file's lock: a lock that can be taken means the
    note beside it is left over from a process that died.
    """
    try:
        since = json.loads(path.with_name(MEASURING_FILE).read_text())["since"]
        with open(_lock_path(path), "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return str(since)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def measure_once(path: Path, key: str, measure: Callable[[], list[Measurement]],
                 runnable: Sequence[str]) -> PrecisionChoice | None:
    """Measure and remember the choice for `key` unless it is remembered or being measured already.

    Returns the choice (remembered or new), or None when another process is measuring: that
    one's choice lands in the file, so this one need not wait for it.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(_lock_path(path), "a")  # noqa: SIM115 (closed below, after the measurement)
    except OSError:
        return None  # a read-only home cannot remember a choice: serving stays in SAFE_PRECISION
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        note = path.with_name(MEASURING_FILE)
        note.write_text(json.dumps({"since": _now(), "pid": os.getpid()}) + "\n")
        try:
            choice, _ = resolve_auto(None, key, measure, runnable,
                                     remembered=cached_choice(path, key))
            with suppress(OSError):
                remember_choice(path, choice)
            return choice
        finally:
            note.unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def usable(choice: PrecisionChoice | None, runnable: Sequence[str]) -> bool:
    """Whether a remembered choice still holds: its precision runs here, and nothing new is offered."""
    return choice is not None and choice.precision in runnable and set(runnable) <= set(choice.offered)


def resolve_auto(path: Path | None, key: str, measure: Callable[[], list[Measurement]],
                 runnable: Sequence[str], *,
                 remembered: PrecisionChoice | None = None) -> tuple[PrecisionChoice, bool]:
    """The remembered choice for `key`, or a new one measured now (and remembered); and whether cached.

    Without a cache file (an encoder built outside any CLIPSEEK_HOME) the choice is measured
    and kept for this process only. `clipseek up` loads the model in the web server and the
    worker at once: the second waits for the first's measurement and takes its choice, so
    queries and images run in the same precision.
    """
    with _exclusive(path):
        found = cached_choice(path, key) if path is not None else remembered
        if found is not None and usable(found, runnable):
            return found, True
        measurements = measure()
        precision, reason = choose_fastest_accurate(measurements)
        text_precision, text_reason = choose_fastest_accurate_query(measurements)
        choice = PrecisionChoice(key=key, precision=precision, reason=reason,
                                 measurements=tuple(measurements), measured_at=_now(),
                                 offered=tuple(m.precision for m in measurements),
                                 text_precision=text_precision, text_reason=text_reason)
        if path is not None:
            # A read-only home measures again at the next start; the choice itself stands.
            with suppress(OSError):
                remember_choice(path, choice)
        return choice, False


def report_lines(*, cpu: Cpu, cores: int | None, device: str, runnable: Sequence[str], setting: str,
                 precision: str, choice: PrecisionChoice | None, from_cache: bool,
                 measuring: str | None = None) -> list[str]:
    """What `clipseek doctor` prints: the CPU, its flags, and the precision with why and the rates.

    Under `auto` with nothing measured yet (`choice` None), the precision served for now and
    when the measurement under way began (`measuring`, None when none runs).
    """
    missing = [f for f in RELEVANT_FLAGS if f not in cpu.flags]
    lines = [f"CPU: {cpu.model} ({cores or '?'} cores), device {device}",
             f"Flags that matter: {' '.join(cpu.flags) or 'none'}"
             + (f" (absent: {' '.join(missing)})" if missing else ""),
             f"This machine can run: {', '.join(runnable)}"]
    if choice is None and setting == "auto":
        lines.append(f"Precision: {pending_sentence(precision, measuring)}")
        return lines
    if choice is None:
        lines.append(f"Precision: {precision}, set by CLIPSEEK_PRECISION={setting} (nothing measured).")
        return lines
    source = f"remembered from {choice.measured_at}" if from_cache else "measured now"
    lines += [f"Precision: {precision}, chosen by CLIPSEEK_PRECISION=auto ({source}).",
              f"Why: {choice.reason}",
              f"Queries: {choice.text_reason or choice.query_precision + ', as the images.'}",
              "Measured on batches of 32 (8 real photos, 4 times over) and 4 queries" + (
                  " (one thread, in CPU time: rates per core, which a busy machine does not skew):"
                  if device == "cpu" else ":"),
              "  precision  images/s  query ms  cosine mean  cosine min  accurate enough"]
    for m in choice.measurements:
        if m.refused is not None:
            lines.append(f"  {m.precision:<9}  could not be made for this model: {m.refused}")
            continue
        verdict = "reference" if m.precision == "fp32" else ("yes" if accurate_enough(m) else "no")
        lines.append(f"  {m.precision:<9}  {m.images_per_s:>8.1f}  {m.query_ms:>8.1f}  "
                     f"{m.mean_cosine:>11.6f}  {m.min_cosine:>10.6f}  {verdict}")
    return lines


def pending_sentence(precision: str, measuring: str | None) -> str:
    """What serves while `auto` has no choice for this machine, and whether one is being measured."""
    if measuring is not None:
        return (f"{precision} for now, measuring in the background (since {measuring}); searches and "
                f"indexing switch to the measured choice when it lands.")
    return (f"{precision} for now: this machine is not measured yet (`clipseek up` measures in the "
            f"background, `clipseek doctor --measure` now).")


def state_sentence(*, setting: str, precision: str, choice: PrecisionChoice | None,
                   measuring: str | None) -> str:
    """The precision in one sentence, for the status page and /api/status."""
    if choice is not None:
        queries = (f" (queries in {choice.query_precision})"
                   if choice.query_precision != choice.precision else "")
        return f"{precision}: measured on {choice.measured_at}, {choice.precision} chosen{queries}."
    if setting != "auto":
        return f"{precision}, set by CLIPSEEK_PRECISION (nothing measured)."
    return pending_sentence(precision, measuring)


def check_runnable(setting: str, device: str, runnable: Sequence[str]) -> None:
    """Refuse a CLIPSEEK_PRECISION this machine cannot run, in one sentence listing what it can."""
    if setting == "auto" or setting in runnable:
        return
    why = {
        "bf16": "this CPU has no bf16 support (AVX-512 BF16 or AMX)",
        "fp16": "fp16 needs a CUDA GPU",
        "int8": ("int8 runs on the CPU only" if device == "cuda"
                 else "this PyTorch build has no int8 engine for this CPU"),
        "onnx-int8": ("onnx-int8 runs on the CPU only" if device == "cuda"
                      else "onnx-int8 needs the Python packages onnxruntime, onnx and onnxscript, "
                           "and PyTorch's int8 engine for the text tower"),
    }.get(setting, f"{setting} is not a precision ClipSeek knows")
    raise ConfigError(f"CLIPSEEK_PRECISION={setting} cannot run here because {why}; this machine "
                      f"can run {', '.join(['auto', *runnable])}.")
