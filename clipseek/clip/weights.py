"""Finding, verifying and downloading the CLIP checkpoint a model id names."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from clipseek.errors import DownloadError, WeightsError
from clipseek.util.download import download_file
from clipseek.util.hashing import sha256_of


@dataclass(frozen=True)
class Checkpoint:
    """A published checkpoint: where it is and the SHA-256 it must have."""

    url: str
    sha256: str
    filename: str
    size_mb: int


# OpenAI publishes each checkpoint under a URL that contains its SHA-256.
OPENAI_CHECKPOINTS = {
    "ViT-B-32": Checkpoint(
        url="https://openaipublic.azureedge.net/clip/models/"
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
        sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        filename="ViT-B-32.pt",
        size_mb=338,
    ),
    "ViT-B-16": Checkpoint(
        url="https://openaipublic.azureedge.net/clip/models/"
        "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
        sha256="5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
        filename="ViT-B-16.pt",
        size_mb=335,
    ),
    # The two below: the SHA-256 as in their URLs; the sizes are about (fp16 parameters plus
    # TorchScript's share, as in ViT-B-32's file), used only in messages.
    "RN50": Checkpoint(
        url="https://openaipublic.azureedge.net/clip/models/"
        "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
        sha256="afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
        filename="RN50.pt",
        size_mb=244,
    ),
    "ViT-L-14": Checkpoint(
        url="https://openaipublic.azureedge.net/clip/models/"
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
        sha256="b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
        filename="ViT-L-14.pt",
        size_mb=890,
    ),
}


def _verified(path: Path, expected: str) -> bool:
    # Hashing 340 MB costs about a second; remember a verified file by its size and mtime.
    stat = path.stat()
    marker = path.with_name(path.name + ".verified")
    stamp = {"sha256": expected, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        if json.loads(marker.read_text()) == stamp:
            return True
    except (OSError, ValueError):
        pass
    if sha256_of(path) != expected:
        return False
    # A read-only folder only costs a re-hash next time.
    with contextlib.suppress(OSError):
        marker.write_text(json.dumps(stamp))
    return True


def _how_to_provide(arch: str, checkpoint: Checkpoint, cache_dir: Path) -> str:
    return (
        f"Download {checkpoint.url} ({checkpoint.size_mb} MB) on a machine with internet access, "
        f"then set CLIPSEEK_WEIGHTS=/path/to/{checkpoint.filename} or copy it to "
        f"{cache_dir / checkpoint.filename}; or set CLIPSEEK_MODEL={arch}/random for a "
        "test model whose results are meaningless."
    )


def resolve_weights(
    arch: str,
    *,
    weights: Path | None,
    expected_sha256: str | None,
    cache_dir: Path,
    allow_download: bool,
) -> Path:
    """Return a verified checkpoint file for `arch`, downloading it when allowed.

    `weights` (CLIPSEEK_WEIGHTS) wins when given. Its SHA-256 must match the official file,
    or `expected_sha256` (CLIPSEEK_WEIGHTS_SHA256) for a checkpoint of the user's own.
    """
    checkpoint = OPENAI_CHECKPOINTS.get(arch)
    if checkpoint is None and (weights is None or expected_sha256 is None):
        known = ", ".join(f"{name}/openai" for name in OPENAI_CHECKPOINTS)
        raise WeightsError(
            f"ClipSeek knows no published checkpoint for {arch}: use one of {known}, or set "
            "CLIPSEEK_WEIGHTS and CLIPSEEK_WEIGHTS_SHA256 to a checkpoint file of your own."
        )
    expected = expected_sha256 or (checkpoint.sha256 if checkpoint else "")
    if weights is not None:
        if not weights.is_file():
            raise WeightsError(
                f"CLIPSEEK_WEIGHTS points to {weights}, which does not exist; set it to the path "
                f"of the {arch} checkpoint file."
            )
        if not _verified(weights, expected):
            raise WeightsError(
                f"{weights} is not the expected {arch} checkpoint (its SHA-256 is not "
                f"{expected[:12]}…): download it again, or set CLIPSEEK_WEIGHTS_SHA256 to its "
                "checksum if it is a checkpoint you trust."
            )
        return weights
    assert checkpoint is not None
    cached = cache_dir / checkpoint.filename
    if cached.is_file():
        if _verified(cached, expected):
            return cached
        cached.unlink()  # a damaged copy: fetch it again below
    if not allow_download:
        raise WeightsError(
            f"The {arch} weights are not on this machine and downloads are off "
            f"(CLIPSEEK_OFFLINE). {_how_to_provide(arch, checkpoint, cache_dir)}"
        )
    try:
        return download_file(checkpoint.url, cached, expected_sha256=expected, retries=3,
                             timeout=20.0)
    except DownloadError as exc:
        raise WeightsError(
            f"The {arch} weights are not on this machine and could not be downloaded "
            f"({exc.reason}). {_how_to_provide(arch, checkpoint, cache_dir)}"
        ) from None


def _recorded_sha256(path: Path) -> str | None:
    """The SHA-256 a file was verified against before, if it has not changed since."""
    try:
        stamp = json.loads(path.with_name(path.name + ".verified").read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or (stamp.get("size"), stamp.get("mtime_ns")) != (
            stat.st_size, stat.st_mtime_ns):
        return None
    sha = stamp.get("sha256")
    return sha if isinstance(sha, str) else None


def resolve_hub_weights(
    name: str,
    *,
    hub_repo: str,
    filename: str,
    pinned_sha256: str | None,
    weights: Path | None,
    expected_sha256: str | None,
    cache_dir: Path,
) -> Path:
    """Return the verified open_clip checkpoint of catalogue model `name` (a hub layout file).

    The file is `weights` (CLIPSEEK_WEIGHTS) when given, else `cache_dir/filename`. It must
    match `expected_sha256` (CLIPSEEK_WEIGHTS_SHA256), else the catalogue's pinned SHA-256; a
    cached file verified once keeps the checksum it was verified against, so later uses (a
    worker, `clipseek model use`) need not repeat it.
    """
    path = weights if weights is not None else cache_dir / filename
    if not path.is_file():
        where = (f"CLIPSEEK_WEIGHTS points to {path}, which does not exist" if weights is not None
                 else "its weights are not on this machine")
        raise WeightsError(
            f"ClipSeek cannot load {name}: {where}; download open_clip_model.safetensors from the "
            f"Hugging Face hub repository {hub_repo.rstrip('/')} and save it as {cache_dir / filename}, "
            "with its SHA-256 in CLIPSEEK_WEIGHTS_SHA256 (or `clipseek model use --sha256`)."
        )
    expected = expected_sha256 or pinned_sha256 or _recorded_sha256(path)
    if expected is None:
        raise WeightsError(
            f"ClipSeek pins no checksum for {name}: give the SHA-256 of {path} (the hub repository "
            f"{hub_repo.rstrip('/')} lists it) as CLIPSEEK_WEIGHTS_SHA256 (or `clipseek model use "
            "--sha256`) so that it can be verified."
        )
    if not _verified(path, expected):
        raise WeightsError(
            f"{path} is not the expected {name} checkpoint (its SHA-256 is not {expected[:12]}…): "
            "download it again, or set CLIPSEEK_WEIGHTS_SHA256 to its checksum if it is a "
            "checkpoint you trust."
        )
    return path
