"""A folder of the user's images, prepared once into a cache that training memory-maps.

Preparing reads every PNG/JPEG under the folder (recursively, in the order of the sorted
paths), converts it to grey when every image is grey (else RGB, alpha dropped), resizes it
to size×size (bicubic) and stores it as uint8. A JPEG is decoded at the smallest of its
reduced scales that still covers the size (PIL's draft mode), which saves most of the
decoding of large photos. The work is spread over worker processes; each image goes
straight from a worker to the file, so the memory of preparing stays that of a few images
per worker however large the folder, and training reads the file memory-mapped: its
resident memory is bounded by the prepared uint8 data, never the full-resolution images.

The result lives in the user's cache folder (`gantrix.cache.cache_dir`, ``folders/<key>``)
under a key made of the folder's file list (relative paths, sizes, modification times),
the image size and the format version: the next run on an unchanged folder opens it in
seconds, a changed folder is prepared again. A cache is written to a temporary folder that
is renamed into place only when complete (each of its files through the one atomic writer,
`gantrix.atomic`), and it is checked before every use (its description, the file's exact
size, a CRC-32 of its bytes): a half-written or corrupt cache is prepared again, never
trusted. A progress bar (`gantrix.progress`) shows the preparing on a terminal.

This module imports no torch, so the worker processes start quickly.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .atomic import atomic_file, fsync_dir, write_atomic
from .cache import cache_dir
from .errors import GantrixError
from .progress import Progress

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: bumped whenever what a cache holds changes, so older caches are prepared again.
FORMAT = "gantrix-image-folder"
FORMAT_VERSION = 1
#: images a worker decodes per task (and per progress update).
CHUNK = 64
#: a folder with fewer images is prepared in this process: starting workers costs more.
IN_PROCESS_BELOW = 512
GREY_MODES = ("L", "LA", "I", "I;16", "1")
IMAGES_FILE, LABELS_FILE, META_FILE = "images.u8", "labels.npy", "meta.json"
READ_BLOCK = 1 << 23


@dataclass(frozen=True)
class Listing:
    """The images of a folder: sorted relative paths, and a digest of what they are (the
    paths with their sizes and modification times) that changes when any file does."""

    folder: Path
    files: tuple[str, ...]
    digest: str

    def key(self, size: int) -> str:
        return hashlib.sha256(f"{FORMAT}-{FORMAT_VERSION}-{size}-{self.digest}".encode()).hexdigest()[:32]


@dataclass
class PreparedFolder:
    """A prepared folder: ``images`` (N, C, S, S) uint8, memory-mapped from the cache;
    ``labels`` (N,) int64 from the first-level sub-folders (sorted names in ``classes``)
    when every image lies in one, else None; the relative paths of the ``skipped``
    unreadable files; ``seconds`` spent preparing (0 when the cache was used)."""

    images: np.ndarray
    labels: np.ndarray | None
    classes: list[str]
    skipped: list[str]
    location: Path | None
    seconds: float

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes)


def list_images(folder: Path) -> Listing:
    """Every PNG/JPEG under ``folder``, recursively; raises when there is none."""
    entries = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in names:
            if name.lower().endswith(IMAGE_SUFFIXES):
                path = os.path.join(root, name)
                try:
                    st = os.stat(path)
                except OSError as exc:
                    raise GantrixError(f"cannot read image {path}: {exc.strerror or exc}") from None
                entries.append((Path(path).relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
    if not entries:
        raise GantrixError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    entries.sort()
    digest = hashlib.sha256(json.dumps(entries).encode()).hexdigest()
    return Listing(folder, tuple(e[0] for e in entries), digest)


def prepare_folder(folder: str | Path, size: int, *, skip_bad: bool = False,
                   workers: int | None = None, report: Callable[[str], None] | None = None,
                   progress: bool | None = None) -> PreparedFolder:
    """The images of ``folder`` at ``size``×``size``, from the cache or prepared into it.

    ``skip_bad`` skips files that cannot be read (they are listed in ``skipped``) instead
    of stopping with the name of the first. ``workers`` decode in parallel (default: one
    per CPU core this process may use). ``report`` gets a line when preparing starts and
    ends (default: standard error); ``progress`` draws a bar on a terminal (default: when
    standard error is one).
    """
    folder = Path(folder).expanduser().resolve()
    report = report or _stderr_line
    listing = list_images(folder)
    key = listing.key(size)
    root = cache_dir() / "folders"
    cached = _open_checked(root / key, key, report)
    if cached is not None:
        _refuse_skipped(cached, folder, skip_bad)
        if cached.skipped:
            report(f"{len(cached.skipped)} unreadable image file(s) of {folder} left out "
                   f"(--skip-bad-images), as when it was prepared")
        return cached
    workers = _default_workers() if workers is None else workers
    if workers < 1:
        raise GantrixError(f"workers must be at least 1, got {workers}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(root)
        scratch = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}.{os.getpid()}."))
        cacheable = True
    except OSError as exc:
        report(f"gantrix: cannot cache the prepared images in {root} ({exc.strerror or exc}); "
               "preparing them for this run only")
        scratch = Path(tempfile.mkdtemp(prefix="gantrix-folder-"))
        cacheable = False
    try:
        seconds = _prepare(listing, size, scratch, key, skip_bad, workers, report, progress)
        if cacheable:
            location = _move_into_place(scratch, root / key)
            prepared = _open(location, key)
            _remove_stale(root, listing.folder, size, key)
        else:
            prepared = _open(scratch, key)
            prepared.location = None
            shutil.rmtree(scratch, ignore_errors=True)  # the memory map keeps the data
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    prepared.seconds = seconds
    return prepared


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _refuse_skipped(prepared: PreparedFolder, folder: Path, skip_bad: bool) -> None:
    if prepared.skipped and not skip_bad:
        first = folder / prepared.skipped[0]
        raise GantrixError(f"cannot read image {first} ({len(prepared.skipped)} unreadable in "
                           f"{folder}); add --skip-bad-images to train without them")


# --------------------------------------------------------------------------- preparing


def _prepare(listing: Listing, size: int, scratch: Path, key: str, skip_bad: bool,
             workers: int, report: Callable[[str], None], progress: bool | None) -> float:
    """Decode the listing into ``scratch`` (images, labels, then the description last);
    return the seconds it took."""
    start = time.perf_counter()
    files = listing.files
    paths = [str(listing.folder / f) for f in files]
    workers = 1 if len(paths) < IN_PROCESS_BELOW else min(workers, -(-len(paths) // CHUNK))
    bad: dict[int, str] = {}
    with _mapper(workers) as imap:
        modes = [m for chunk in imap(_probe, _chunks(paths, CHUNK * 4)) for m in chunk]
        for i, (grey, error) in enumerate(modes):
            if error is not None:
                bad[i] = error
        _stop_unless_skipping(bad, paths, skip_bad)
        readable = [i for i in range(len(paths)) if i not in bad]
        if not readable:
            raise GantrixError(f"none of the {len(paths)} images in {listing.folder} can be read")
        grey = all(modes[i][0] for i in readable)
        report(f"preparing {len(paths):,} images of {listing.folder} at {size}×{size} "
               f"({workers} worker{'s' * (workers > 1)}); kept in {scratch.parent} for the next runs")
        kept: list[int] = []
        crc = 0
        index_chunks = _chunks(readable, CHUNK)
        tasks = (([paths[i] for i in chunk], size, grey) for chunk in index_chunks)
        with Progress(len(paths), progress, desc="preparing", unit="image") as bar, \
                atomic_file(scratch / IMAGES_FILE) as out:
            for indices, results in zip(index_chunks, imap(_decode_task, tasks)):
                for i, (pixels, error) in zip(indices, results):
                    if error is not None:
                        bad[i] = error
                        _stop_unless_skipping(bad, paths, skip_bad)
                        continue
                    out.write(pixels)
                    crc = zlib.crc32(pixels, crc)
                    kept.append(i)
                bar.update(len(kept) + len(bad))
    if not kept:
        raise GantrixError(f"none of the {len(paths)} images in {listing.folder} can be read")
    channels = 1 if grey else 3
    kept_files = [files[i] for i in kept]
    classes, labels = _labels(kept_files)
    labels_crc = None
    if labels is not None:
        with atomic_file(scratch / LABELS_FILE) as out:
            np.save(out, labels)
        labels_crc = _crc_file(scratch / LABELS_FILE)
    skipped = sorted(files[i] for i in bad)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "key": key,
            "folder": str(listing.folder), "shape": [len(kept), channels, size, size],
            "crc32": crc, "labels_crc32": labels_crc, "classes": classes, "skipped": skipped}
    write_atomic(scratch / META_FILE, json.dumps(meta, indent=1).encode())
    seconds = time.perf_counter() - start
    mb = len(kept) * channels * size * size / 1e6
    report(f"prepared {len(kept):,} images ({'grey' if grey else 'RGB'} {size}×{size}, "
           f"{mb:,.1f} MB) in {seconds:.1f} s"
           + (f"; skipped {len(skipped)} unreadable" if skipped else ""))
    return seconds


def _stop_unless_skipping(bad: dict[int, str], paths: Sequence[str], skip_bad: bool) -> None:
    if bad and not skip_bad:
        i = min(bad)
        raise GantrixError(f"cannot read image {paths[i]}: {bad[i]} "
                           "(--skip-bad-images trains without the unreadable files)")


def _labels(files: Sequence[str]) -> tuple[list[str], np.ndarray | None]:
    """Classes from the first-level sub-folders, when every image lies in one."""
    parts = [f.split("/") for f in files]
    if not parts or any(len(p) == 1 for p in parts):
        return [], None
    classes = sorted({p[0] for p in parts})
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.array([index[p[0]] for p in parts], dtype=np.int64)


def _chunks(items: Sequence, n: int) -> list:
    return [items[i:i + n] for i in range(0, len(items), n)]


@contextmanager
def _mapper(workers: int) -> Iterator[Callable]:
    """An ordered, lazy ``imap``: worker processes (spawned, so they share nothing with
    this process's threads), or this process when one worker suffices."""
    if workers == 1:
        yield map
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield pool.imap


def _probe(paths: Sequence[str]) -> list[tuple[bool, str | None]]:
    """For each file: whether it is grey (from its header alone), or why it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    found = []
    for path in paths:
        try:
            with Image.open(path) as im:
                found.append((im.mode in GREY_MODES, None))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            found.append((False, str(exc)))
    return found


def _decode_task(task: tuple[Sequence[str], int, bool]) -> list[tuple[bytes | None, str | None]]:
    paths, size, grey = task
    return [_decode(path, size, grey) for path in paths]


def _decode(path: str, size: int, grey: bool) -> tuple[bytes | None, str | None]:
    """One image as (C, size, size) uint8 bytes, or why it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    mode = "L" if grey else "RGB"
    try:
        with Image.open(path) as im:
            im.draft(mode, (size, size))  # JPEG: decode at a reduced scale ≥ size
            im = im.convert(mode).resize((size, size), Image.Resampling.BICUBIC)
            pixels = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return None, str(exc)
    if not grey:
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels).tobytes(), None


# --------------------------------------------------------------------------- the cache


def _crc_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            crc = zlib.crc32(block, crc)
    return crc


def _move_into_place(scratch: Path, target: Path) -> Path:
    """Rename the complete ``scratch`` to ``target``, replacing a stale one; when another
    process put a complete cache there first, use that one."""
    for attempt in range(3):
        try:
            os.rename(scratch, target)
            break
        except OSError:
            if attempt == 2:
                raise
            if _open_or_none(target, target.name) is not None:
                shutil.rmtree(scratch, ignore_errors=True)
                return target
            shutil.rmtree(target, ignore_errors=True)
    fsync_dir(target.parent)  # the rename itself made durable, as the atomic writer does
    return target


def _remove_abandoned(root: Path) -> None:
    """Remove the scratch folders of preparations whose process is gone (killed midway)."""
    for scratch in root.glob(".*.*.*"):
        try:
            pid = int(scratch.name.split(".")[2])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(scratch, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def _remove_stale(root: Path, folder: Path, size: int, key: str) -> None:
    """Remove the caches of earlier versions of ``folder`` at ``size``: a changed folder
    leaves its old prepared images behind otherwise (gigabytes for a large one)."""
    for meta in root.glob("*/" + META_FILE):
        if meta.parent.name == key:
            continue
        try:
            old = json.loads(meta.read_text())
            if old.get("folder") == str(folder) and old["shape"][2] == size:
                shutil.rmtree(meta.parent, ignore_errors=True)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue


def _open_or_none(location: Path, key: str) -> PreparedFolder | None:
    try:
        return _open(location, key)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _open_checked(location: Path, key: str, report: Callable[[str], None]) -> PreparedFolder | None:
    """The cache at ``location`` when it is complete and intact; None when there is none or
    it is damaged (then it is removed, with a line saying so)."""
    if not location.exists():
        return None
    try:
        return _open(location, key)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report(f"gantrix: the prepared images in {location} are damaged ({exc}); preparing them again")
        shutil.rmtree(location, ignore_errors=True)
        return None


def _open(location: Path, key: str) -> PreparedFolder:
    """Open a prepared folder after checking it; raises ValueError (or OSError) when it is
    not exactly what its description says."""
    meta = json.loads((location / META_FILE).read_text())
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION or meta.get("key") != key:
        raise ValueError("it was written by another version or for other files")
    shape = tuple(int(v) for v in meta["shape"])
    if len(shape) != 4 or shape[1] not in (1, 3) or shape[2] != shape[3] or shape[0] < 1:
        raise ValueError(f"its shape {shape} is not (N, 1 or 3, S, S)")
    path = location / IMAGES_FILE
    expected = int(np.prod(shape))
    if path.stat().st_size != expected:
        raise ValueError(f"{path.name} holds {path.stat().st_size} bytes, not {expected}")
    if _crc_file(path) != meta["crc32"]:
        raise ValueError(f"{path.name} does not match its checksum")
    labels = None
    if meta["labels_crc32"] is not None:
        if _crc_file(location / LABELS_FILE) != meta["labels_crc32"]:
            raise ValueError(f"{LABELS_FILE} does not match its checksum")
        labels = np.load(location / LABELS_FILE, allow_pickle=False)
        if labels.shape != (shape[0],) or labels.dtype != np.int64:
            raise ValueError(f"{LABELS_FILE} is not {shape[0]} labels")
    images = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
    return PreparedFolder(images, labels, list(meta["classes"]), list(meta["skipped"]), location, 0.0)


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
