"""int8 through ONNX Runtime: the image tower exported once per model and weights, then cached.

On CPUs without AMX, PyTorch's best accurate precision is its own dynamic int8, and ONNX
Runtime's int8 kernels (MLAS) ran the ViT-B/32 image tower 1.3x faster than it on a real
AVX2-only EPYC (BENCHMARKS.md). So `onnx-int8` is one more precision `auto` measures: the
image tower runs in ONNX Runtime with int8 weights and per-batch int8 activations (dynamic
quantisation, no calibration set); so does the text tower, which encodes one short query at a
time and where ONNX Runtime's small per-operator cost matters more than its kernels (models
whose text tower does not have CLIP's usual shape keep it in PyTorch's int8).

The export takes 15-25 seconds, so it happens once per model, tower, weights and library
versions: the file lands in the model cache's `onnx/` folder under a name made of those, with a
record of its SHA-256 beside it. A file whose checksum no longer matches (a damaged disk, an
interrupted copy, an edit) is exported again rather than trusted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipseek.errors import ConfigError
from clipseek.util.hashing import sha256_of

log = logging.getLogger(__name__)

PRECISION = "onnx-int8"
# The packages the export and the runtime need; without them `onnx-int8` is not offered.
PACKAGES = ("onnxruntime", "onnx", "onnxscript")
# CPU flags with int8 dot-product instructions (VNNI). Without them, MLAS sums pairs of
# u8 x s8 products in 16 bits, which saturates with full-range int8 weights: on a real
# AVX2-only EPYC plain int8 agreed with fp32 only to 0.990 mean / 0.984 min, and 7-bit
# weights (`reduce_range`) to 0.9996. With VNNI the products are summed in 32 bits.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# The towers exported: the image tower always, the text tower where its shape allows (`text_export`).
IMAGE, TEXT = "image", "text"


class ExportRefused(ConfigError):
    """This model's image tower cannot become a file ONNX Runtime runs: it would fail again."""


def available() -> bool:
    """Whether the packages this precision needs are installed."""
    return all(importlib.util.find_spec(name) is not None for name in PACKAGES)


def weights_checksum(model: Any, tower: str = IMAGE) -> str:
    """SHA-256 of one tower's tensors (names, shapes and values): what its export is of.

    Hashing the tensors themselves covers every source alike (OpenAI's files, open_clip
    checkpoints, seeded random weights) and costs about a fifth of a second for ViT-B/32.
    The text tower is every tensor outside the image tower.
    """
    digest = hashlib.sha256()
    tensors = (model.visual.state_dict() if tower == IMAGE else
               {k: v for k, v in model.state_dict().items() if not k.startswith("visual.")})
    for name, tensor in sorted(tensors.items()):
        digest.update(f"{name} {tuple(tensor.shape)} {tensor.dtype}\n".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def reduce_range_for(flags: Sequence[str]) -> bool:
    """Whether this CPU needs 7-bit weights for its int8 sums not to saturate (no VNNI)."""
    return not set(VNNI_FLAGS) & set(flags)


def cache_name(model_id: str, checksum: str, *, reduce_range: bool, tower: str = IMAGE) -> str:
    """The cached file's name: the model, the tower, its weights, the libraries, the quantisation."""
    import onnxruntime
    import torch

    safe_id = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id) + ("" if tower == IMAGE else f"-{tower}")
    quantisation = "int8-r7" if reduce_range else "int8"
    return (f"{safe_id}-{checksum[:16]}-torch{torch.__version__}-ort{onnxruntime.__version__}"
            f"-{quantisation}.onnx")


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _valid(path: Path, checksum: str) -> bool:
    """Whether `path` is the export of these weights and still has the checksum recorded for it."""
    try:
        record = json.loads(_record_path(path).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("weights_sha256") != checksum:
        return False
    try:
        return sha256_of(path) == record.get("sha256")
    except OSError:
        return False


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    # `clipseek up` starts the web server and the worker together: one exports, the other waits.
    with open(folder / ".export.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _from_the_exporter(record: logging.LogRecord) -> bool:
    """Whether a log record comes from the exporter's or the quantiser's own code."""
    path = record.pathname.replace(os.sep, "/")
    return not any(part in path for part in ("/onnxruntime/", "/onnxscript/", "/onnx_ir/", "/torch/onnx/"))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the exporter's progress lines and the quantiser's advice out of the product's output.

    The exporter prints to stdout, which `clipseek search --json` writes its results to, and
    the quantiser logs advice through the root logger; other code's records still pass. The
    quantiser's `logging.warning` would also give a root logger without handlers a handler
    of its own (logging's basicConfig), writing to the stderr of that moment: the handlers
    are put back as they were, so the rest of the process logs as it did before.
    """
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    root = logging.getLogger()
    handlers = root.handlers[:]
    root.addFilter(_from_the_exporter)
    try:
        with (contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()),
              warnings.catch_warnings()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(_from_the_exporter)
        root.handlers[:] = handlers
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _reason(exc: BaseException) -> str:
    """The cause of an export failure in one line: the innermost error's message, without colours."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def image_side(model: Any) -> int:
    """The side in pixels of the square images the network's image tower takes."""
    size = getattr(model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def export_fp32(model: Any, path: Path) -> None:
    """Write the image tower (pixels in, unnormalised features out) as fp32 ONNX with a dynamic batch.

    Its weights go in a file beside `path`: a tower over 2 GB (ViT-H) would not fit in one
    protobuf message.
    """
    import torch

    class ImageTower(torch.nn.Module):
        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, pixels: torch.Tensor) -> Any:
            return self.clip.encode_image(pixels)

    side = image_side(model)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(ImageTower(model).eval(), (torch.zeros(2, 3, side, side),), str(path),
                      input_names=["pixels"], output_names=["features"], dynamo=True, verbose=False,
                      dynamic_shapes={"pixels": {0: batch}}, external_data=True)


def export_text_fp32(tower: Any, path: Path) -> None:
    """Write a text tower module (tokens cut at the longest end of text in, features out) as fp32
    ONNX, dynamic in the batch and the number of tokens."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    length = torch.export.Dim("length", min=2, max=77)
    tokens = torch.ones(2, 8, dtype=torch.int64)
    torch.onnx.export(tower.eval(), (tokens,), str(path), input_names=["tokens"],
                      output_names=["features"], dynamo=True, verbose=False,
                      dynamic_shapes={"tokens": {0: batch, 1: length}}, external_data=True)


def _export(model: Any, path: Path, checksum: str, *, reduce_range: bool, tower: str = IMAGE,
            text_tower: Any = None) -> None:
    """Export a tower to ONNX in fp32, quantise it to int8, and write it with its record."""
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix=".export-", dir=path.parent) as scratch, _quiet():
        fp32 = Path(scratch) / "image-fp32.onnx"
        try:
            if tower == IMAGE:
                export_fp32(model, fp32)
            else:
                export_text_fp32(text_tower, fp32)
            partial = Path(scratch) / path.name
            # MatMuls with a constant weight only, as PyTorch's dynamic int8 of the Linear layers;
            # the int8 result (a quarter of the fp32 size) fits in one file.
            quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8,
                             reduce_range=reduce_range)
        except OSError:
            raise  # the disk, not the model: said by `exported` as such
        except Exception as exc:  # the exporter raises many kinds; each means "cannot export this"
            raise ExportRefused(f"ClipSeek could not export this model's {tower} tower to ONNX for "
                              f"{PRECISION} ({_reason(exc)}); use CLIPSEEK_PRECISION=int8 or auto "
                              f"instead.") from exc
        record = {"sha256": sha256_of(partial), "weights_sha256": checksum, "torch": torch.__version__,
                  "onnxruntime": onnxruntime.__version__, "reduce_range": reduce_range}
        os.replace(partial, path)
        partial_record = _record_path(path).with_suffix(".partial")
        partial_record.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(partial_record, _record_path(path))


def exported(model: Any, folder: Path, model_id: str, *, reduce_range: bool, tower: str = IMAGE,
             text_tower: Any = None) -> Path:
    """The verified int8 ONNX file of one of `model`'s towers, exported now unless cached.

    The text tower is exported from `text_tower`, a module that runs it on cut tokens.
    """
    checksum = weights_checksum(model, tower)
    path = folder / cache_name(model_id, checksum, reduce_range=reduce_range, tower=tower)
    if _valid(path, checksum):
        return path  # also from a folder this user may only read
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder):
            if _valid(path, checksum):  # exported by another process while this one waited
                return path
            # Scratch folders of exports that were killed (351 MB each for ViT-B/32): with the
            # lock held, no export of this folder is running.
            for scratch in folder.glob(".export-*"):
                shutil.rmtree(scratch, ignore_errors=True)
            if path.exists():
                log.warning("%s does not match its recorded checksum: exporting it again.", path)
            log.info("Exporting the %s tower of %s to ONNX for %s (once per model and weights).",
                     tower, model_id, PRECISION)
            _export(model, path, checksum, reduce_range=reduce_range, tower=tower, text_tower=text_tower)
    except OSError as exc:
        raise ConfigError(f"{PRECISION} could not write its export of the {tower} tower to {folder} "
                          f"({exc.strerror or exc}): set CLIPSEEK_MODEL_CACHE to a folder this user "
                          f"can write.") from None
    return path


class OnnxClip:
    """A CLIP network whose towers run in ONNX Runtime's int8: the image tower always, the text
    tower where it could be exported (`text_path`), else in PyTorch's int8 (`text_model`).

    One ONNX Runtime session per file and thread count, made on first use: the web server and
    the worker run with all cores, `auto`'s probe on one thread (it times in CPU time, which
    counts only the calling thread's work, and a one-thread session runs on the caller).
    """

    def __init__(self, text_model: Any, path: Path, text_path: Path | None = None) -> None:
        self.text_model = text_model
        self.path = path
        self.text_path = text_path
        self._sessions: dict[tuple[Path, int], Any] = {}
        self._lock = threading.Lock()

    def check(self, side: int, threads: int) -> None:
        """Open a session and run one image, so a file ONNX Runtime cannot run fails at load.

        Raises ConfigError with the runtime's reason, which `auto` takes as "leave onnx-int8 out".
        """
        try:
            self.image_features(np.zeros((1, 3, side, side), dtype=np.float32), threads)
        except Exception as exc:  # ONNX Runtime's errors (Fail, InvalidGraph, ...) share no base of ours
            raise ExportRefused(f"ONNX Runtime could not run the exported image tower of "
                                f"{self.path.name} ({_reason(exc)}); use CLIPSEEK_PRECISION=int8 "
                                f"or auto instead.") from exc

    def check_text(self, threads: int) -> None:
        """Run one query through the exported text tower, so a file ONNX Runtime cannot run fails at load."""
        try:
            self.text_features(np.array([[1, 2, 3]], dtype=np.int64), threads)
        except Exception as exc:  # ONNX Runtime's errors share no base of ours
            raise ExportRefused(f"ONNX Runtime could not run the exported text tower ({_reason(exc)})"
                                ) from exc

    def text_features(self, tokens: np.ndarray, threads: int) -> np.ndarray:
        """The text tower's unnormalised features of tokens cut at the longest end of text."""
        assert self.text_path is not None
        batch = np.ascontiguousarray(tokens, dtype=np.int64)
        outputs = self._session(threads, self.text_path).run(["features"], {"tokens": batch})
        return np.asarray(outputs[0], dtype=np.float32)

    def _session(self, threads: int, path: Path | None = None) -> Any:
        path = path or self.path
        with self._lock:
            if (path, threads) not in self._sessions:
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                # Spinning threads would take the cores that decode the next batch meanwhile.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._sessions[(path, threads)] = onnxruntime.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"])
            return self._sessions[(path, threads)]

    def image_features(self, pixels: np.ndarray, threads: int) -> np.ndarray:
        """The image tower's unnormalised features of a preprocessed batch."""
        batch = np.ascontiguousarray(pixels, dtype=np.float32)
        outputs = self._session(threads).run(["features"], {"pixels": batch})
        return np.asarray(outputs[0], dtype=np.float32)
