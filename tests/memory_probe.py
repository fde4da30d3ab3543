"""Run one decoding or serving scenario in a fresh process and print its peak memory growth.

Usage: python -m tests.memory_probe write-tiff|write-png PATH
       python -m tests.memory_probe decode PATH THREADS
       python -m tests.memory_probe serve IMAGE_ID REQUESTS   (settings from the environment)
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from clipseek.photo.imaging import load_rgb

SIDE = 10_000  # 100 megapixels, the default CLIPSEEK_MAX_IMAGE_PIXELS


def write_tiff(path: Path) -> None:
    """A 100-megapixel RGB TIFF, LZW-compressed to a few MB (each row one colour)."""
    rows = Image.linear_gradient("L").resize((SIDE, SIDE), Image.Resampling.NEAREST)
    flat = Image.new("L", (SIDE, SIDE), 128)
    Image.merge("RGB", (rows, ImageOps.invert(rows), flat)).save(path, compression="tiff_lzw")


def write_png(path: Path) -> None:
    """A 100-megapixel 16-bit greyscale PNG that compresses to a few hundred KB."""
    steps = (np.arange(SIDE, dtype=np.uint16) // 40) * 64
    Image.fromarray(steps[:, None] + steps[None, :]).save(path)


def _megabytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no {key} in /proc/self/status")


def _growth(work: Callable[[], dict[str, object]]) -> dict[str, object]:
    # Resetting the high-water mark leaves out what imports and setup cost before.
    Path("/proc/self/clear_refs").write_text("5")
    baseline = _megabytes("VmRSS")
    outcome = work()
    return {"growth_mb": _megabytes("VmHWM") - baseline, **outcome}


def _together(count: int, job: Callable[[], object]) -> list[object]:
    start = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index: int) -> None:
        start.wait()
        results[index] = job()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def decode(path: Path, threads: int) -> dict[str, object]:
    """Decode one file for CLIP the way the worker does, from `threads` threads at once."""
    sizes = _together(threads, lambda: load_rgb(path, max_pixels=SIDE * SIDE).size)
    return {"sizes": sizes}


def serve(image_id: int, requests: int) -> dict[str, object]:
    """Ask the real web app, over HTTP, for one picture `requests` times at once."""
    from werkzeug.serving import make_server

    from webapp import create_app

    server = make_server("127.0.0.1", 0, create_app(), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/file/"

    def fetch() -> dict[str, object]:
        with urllib.request.urlopen(f"{base}{image_id}") as response:
            return {"status": response.status, "type": response.headers["Content-Type"],
                    "etag": response.headers["ETag"], "cache": response.headers["Cache-Control"],
                    "bytes": len(response.read())}

    try:
        urllib.request.urlopen(f"{base}0").close()
    except urllib.error.HTTPError as exc:  # a 404 that opens the database connection first
        assert exc.code == 404
    result = _growth(lambda: {"responses": _together(requests, fetch)})
    server.shutdown()
    return result


def main(argv: list[str]) -> None:
    """Run the scenario named on the command line and print its outcome as JSON."""
    command, *args = argv
    if command == "write-tiff":
        write_tiff(Path(args[0]))
    elif command == "write-png":
        write_png(Path(args[0]))
    elif command == "decode":
        print(json.dumps(_growth(lambda: decode(Path(args[0]), int(args[1])))))
    elif command == "serve":
        print(json.dumps(serve(int(args[0]), int(args[1]))))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
