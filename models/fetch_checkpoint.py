#!/usr/bin/env python3
"""Finds the official MobileSAM checkpoint the way a model hub client does, for the export.

In order: SAMSTREAM_CHECKPOINT (a local file); a cached download; a download from each of the
URLs (SAMSTREAM_CHECKPOINT_URL, space-separated; default: the official MobileSAM repository's
weights/mobile_sam.pt, then the copy Ultralytics publishes as a release asset). Every candidate
is verified before it is used: it must load with `torch.load(weights_only=True)` into the
official architecture (mobile_sam's vit_t) with every key and shape matching, so an HTML error
page, a truncated file or another model's checkpoint is refused with the reason. Downloads have
connect and read timeouts (an offline machine falls back within seconds, a server that never
answers cannot hang the set-up), show a progress bar on a terminal and plain lines otherwise,
go to a temporary file that is renamed into the cache only once verified, and are cached by
content (sha256) with an index from URL to content, so a cached URL makes no request.
SAMSTREAM_OFFLINE=1 (or --offline) skips the network.

Prints one JSON object on stdout:
  {"path": ..., "sha256": ..., "url": ... | null, "source": "local" | "cache" | "download"}
or, when no source gives a checkpoint, {"path": null, "reasons": [...]} (exit status 0: the
set-up then exports seeded random weights and says why). With --print export-args it prints
export.py's source arguments instead (`--checkpoint PATH [--checkpoint-url URL]`, or
`--random-init --seed 0` after a warning saying why), for the images' model stage.

    python models/fetch_checkpoint.py --cache DIR [--url URL ...] [--offline] [--timeout S]
                                      [--print json|export-args]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

OFFICIAL_URLS = [
    "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
    "https://github.com/ultralytics/assets/releases/download/v8.3.0/mobile_sam.pt",
]
# Connect and per-read timeout; an offline machine fails both URLs within about twice this.
DEFAULT_TIMEOUT_S = 6.0
CHUNK = 1 << 20


def log(message: str) -> None:
    print(f"[checkpoint] {message}", file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path) -> None:
    """Raises ValueError naming the problem unless `path` is a MobileSAM (vit_t) state dict."""
    import pickle
    import warnings
    import zipfile

    import torch

    with open(path, "rb") as f:
        head = f.read(512)
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        raise ValueError("an HTML page, not a checkpoint (an error or login page?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, OSError) as e:
        first_sentence = str(e).splitlines()[0].split(". ")[0][:200]
        raise ValueError(f"not a loadable PyTorch checkpoint (truncated or corrupt?): {first_sentence}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"not a state dict but a {type(state).__name__}")
    # timm's deprecation notices when mobile_sam registers TinyViT are noise in a set-up log.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    from mobile_sam import sam_model_registry

    model = sam_model_registry["vit_t"]()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"not a MobileSAM checkpoint: {len(missing)} of its {len(expected)} tensors missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise ValueError(f"not a MobileSAM checkpoint: {len(wrong)} tensors of the wrong shape, e.g. {k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}")
    model.load_state_dict(state, strict=True)


class Cache:
    """Checkpoints by content (`sha256-<hex>.pt`) and an index from URL to content."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index_path = folder / "urls.json"

    def index(self) -> dict:
        try:
            return json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            return {}

    def lookup(self, url: str) -> Path | None:
        digest = self.index().get(url)
        path = self.folder / f"sha256-{digest}.pt" if digest else None
        return path if path and path.is_file() else None

    def store(self, url: str, download: Path, digest: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"sha256-{digest}.pt"
        os.replace(download, path)
        index = self.index() | {url: digest}
        tmp = self.index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=1) + "\n")
        os.replace(tmp, self.index_path)
        return path


def download(url: str, folder: Path, timeout: float) -> Path:
    """The body of `url` in a temporary file in `folder`; raises on HTTP errors and timeouts."""
    folder.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": "samstream-setup"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".download-", suffix=".part")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                progress = Progress(url, total)
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    progress.advance(len(chunk))
                progress.done()
            if total and path.stat().st_size != total:
                raise ValueError(f"truncated: {path.stat().st_size} of {total} bytes")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    return path


class Progress:
    """A bar on a terminal, a line per 10% in logs."""

    def __init__(self, url: str, total: int) -> None:
        self.url, self.total, self.seen, self.tty = url, total, 0, sys.stderr.isatty()
        self.next_report = 0.1
        log(f"downloading {url}" + (f" ({total / 1e6:.1f} MB)" if total else ""))

    def advance(self, n: int) -> None:
        self.seen += n
        if not self.total:
            return
        share = self.seen / self.total
        if self.tty:
            bar = "#" * int(share * 30)
            print(f"\r[checkpoint] [{bar:<30}] {share * 100:5.1f}% of {self.total / 1e6:.1f} MB", end="", file=sys.stderr, flush=True)
        elif share >= self.next_report:
            log(f"{share * 100:.0f}% of {self.total / 1e6:.1f} MB")
            self.next_report += 0.1

    def done(self) -> None:
        if self.tty and self.total:
            print(file=sys.stderr)


def resolve(cache: Cache, urls: list[str], offline: bool, timeout: float, local: str | None) -> dict:
    reasons = []
    if local:
        path = Path(local)
        try:
            verify(path)
            return {"path": str(path), "sha256": sha256_file(path), "url": None, "source": "local"}
        except (OSError, ValueError) as e:
            # A checkpoint the user named must not be replaced silently.
            raise SystemExit(f"SAMSTREAM_CHECKPOINT={local}: {e}")
    for url in urls:
        cached = cache.lookup(url)
        if cached:
            return {"path": str(cached), "sha256": cached.stem.removeprefix("sha256-"), "url": url, "source": "cache"}
    if offline:
        return {"path": None, "reasons": ["offline (SAMSTREAM_OFFLINE=1): the network was not tried"]}
    for url in urls:
        started = time.monotonic()
        try:
            part = download(url, cache.folder, timeout)
        except urllib.error.HTTPError as e:
            reasons.append(f"{url}: HTTP {e.code} {e.reason}")
            log(reasons[-1])
            continue
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            cause = getattr(e, "reason", None) or e
            reasons.append(f"{url}: {type(cause).__name__ if not str(cause) else cause} after {time.monotonic() - started:.1f} s")
            log(reasons[-1])
            continue
        try:
            verify(part)
        except ValueError as e:
            part.unlink(missing_ok=True)
            reasons.append(f"{url}: refused, {e}")
            log(reasons[-1])
            continue
        digest = sha256_file(part)
        path = cache.store(url, part, digest)
        log(f"verified and cached as {path}")
        return {"path": str(path), "sha256": digest, "url": url, "source": "download"}
    return {"path": None, "reasons": reasons}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True, help="folder of cached checkpoints")
    parser.add_argument("--url", action="append", help="URL to try, in order (default: SAMSTREAM_CHECKPOINT_URL, else the official ones)")
    parser.add_argument("--offline", action="store_true", default=os.environ.get("SAMSTREAM_OFFLINE") == "1")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="connect and read timeout per URL, seconds")
    parser.add_argument("--print", choices=["json", "export-args"], default="json", help="what to print on stdout")
    args = parser.parse_args()
    urls = args.url or (os.environ.get("SAMSTREAM_CHECKPOINT_URL", "").split() or OFFICIAL_URLS)
    result = resolve(Cache(args.cache), urls, args.offline, args.timeout, os.environ.get("SAMSTREAM_CHECKPOINT") or None)
    if args.print == "json":
        print(json.dumps(result))
    elif result["path"]:
        log(f"official checkpoint {result['path']} (sha256 {result['sha256']}, {result['source']})")
        print(" ".join(["--checkpoint", result["path"]] + (["--checkpoint-url", result["url"]] if result["url"] else [])))
    else:
        log(f"warning: no official checkpoint ({'; '.join(result['reasons'])}); exporting seeded random weights: "
            "exact architecture, cost and I/O, but meaningless masks")
        print("--random-init --seed 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
