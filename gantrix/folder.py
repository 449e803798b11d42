"""A folder of the user's images, prepared once into a cache that training memory-maps.

Preparing reads every file under the folder (recursively, following links to sub-folders
once each, in the order of the sorted paths) whose suffix is one Pillow reads
(`image_suffixes`: PNG, JPEG, WebP, BMP, GIF, TIFF, ...; the first frame of an animation),
converts it to grey when every image is grey (else RGB, alpha dropped; 16-bit images with
65535 as white), makes it square (`FITS`: the centre square by default, as DCGAN's CelebA
preparation does, or padded with black, or squashed), resizes it to size×size (bicubic)
and stores it as uint8. A JPEG is decoded at the smallest of its reduced scales that still
covers the size (PIL's draft mode), which saves most of the decoding of large photos. The
work is spread over worker processes; each image goes straight from a worker to the file,
so the memory of preparing stays that of a few images per worker however large the folder,
and training reads the file memory-mapped: its resident memory is bounded by the prepared
uint8 data, never the full-resolution images.

Files are opened only when they are regular files (`open_regular`): a FIFO, a device or a
socket named like an image, a dangling or looping link, a file that cannot be stat'ed or
decoded (a decompression bomb included) is an unreadable image, named in the error that
stops the preparing, or left out with ``skip_bad`` and listed with its reason in the
cache's description. Files of other types are ignored, and named (`Listing.ignored`).

The result lives in the user's cache folder (`gantrix.cache.cache_dir`, ``folders/<key>``)
under a key made of the folder's file list (relative paths, sizes, modification times),
the image size, the fit and the format version: the next run on an unchanged folder opens
it in seconds, a changed folder is prepared again. A cache is written to a temporary folder
that is renamed into place only when complete (each of its files through the one atomic
writer, `gantrix.atomic`), and it is checked before every use (its description, field by
field, the file's exact size, a CRC-32 of its bytes): a half-written, corrupt or tampered
cache is prepared again, never trusted. A progress bar (`gantrix.progress`) shows the
preparing on a terminal.

This module imports no torch, so the worker processes start quickly.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import stat
import sys
import tempfile
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

import numpy as np

from .atomic import atomic_file, fsync_dir, write_atomic
from .cache import cache_dir
from .errors import GantrixError
from .progress import Progress

#: bumped whenever what a cache holds changes, so older caches are prepared again.
FORMAT = "gantrix-image-folder"
FORMAT_VERSION = 2
#: how a non-square image becomes square: its centre square (the default), the whole image
#: padded with black to a square, or the whole image squashed.
FITS = ("crop", "pad", "squash")
DEFAULT_FIT = "crop"
FIT_WORDS = {"crop": "centre-cropped", "pad": "padded", "squash": "squashed"}
#: images a worker decodes per task (and per progress update).
CHUNK = 64
#: a folder with fewer images is prepared in this process: starting workers costs more.
IN_PROCESS_BELOW = 512
#: the image types named first when a folder has none
COMMON_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: the bands of a grey image (alpha aside)
GREY_BANDS = frozenset({"L", "I", "F", "1"})
IMAGES_FILE, LABELS_FILE, META_FILE = "images.u8", "labels.npy", "meta.json"
READ_BLOCK = 1 << 23
#: unreadable or ignored files named in a message (the cache's meta.json lists them all).
NAMED = 3
#: what reading a cache that is not what it says raises.
DAMAGED = (OSError, ValueError, KeyError, TypeError, RecursionError)


# --------------------------------------------------------------------------- files


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, in words (from its ``st_mode``)."""
    for test, words in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISDIR, "a folder")):
        if test(mode):
            return words
    return "a special file"


def open_regular(path: str | Path) -> BinaryIO:
    """``path`` opened for reading in binary, when it is a regular file (after following
    links); else OSError saying what it is. The file is opened without blocking (a FIFO
    would wait for a writer forever) and nothing is read from what is not a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    f = open(path, "rb", opener=lambda name, _: os.open(name, flags))
    try:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"{file_kind(mode)}, not a regular file", str(path))
        os.set_blocking(f.fileno(), True)
    except BaseException:
        f.close()
        raise
    return f


def stat_problem(path: str | Path, exc: OSError) -> str:
    """Why ``os.stat(path)`` failed, in words: a dangling or looping link, or the error."""
    if os.path.islink(path):
        if exc.errno == errno.ELOOP:
            return "a symbolic link that loops"
        if exc.errno == errno.ENOENT:
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
    return f"cannot stat it: {exc.strerror or exc}"


@functools.lru_cache(maxsize=1)
def image_suffixes() -> tuple[frozenset[str], dict[str, str]]:
    """The suffixes (lower case, with the dot) of the files Pillow reads as images, and
    those Pillow knows but cannot decode here, with the reason: formats it only identifies
    (stubs that need a handler plugin, MPEG), EPS without Ghostscript."""
    from PIL import EpsImagePlugin, Image, ImageFile

    readable, cannot = set(), {}
    for suffix, fmt in Image.registered_extensions().items():
        if fmt not in Image.OPEN:  # written only (PDF, ...)
            continue
        factory = Image.OPEN[fmt][0]
        if fmt == "MPEG" or (isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)):
            cannot[suffix] = f"Pillow identifies {fmt} files but does not decode them"
        elif fmt == "EPS" and not EpsImagePlugin.gs_binary:
            cannot[suffix] = "Pillow reads EPS files only with Ghostscript, which is not installed"
        else:
            readable.add(suffix)
    return frozenset(readable), cannot


def _named(items: Sequence[tuple[str, str]], more_at: Path | None = None) -> str:
    """The first `NAMED` of (file, reason) pairs, and how many more (and where they are)."""
    text = "; ".join(f"{name} ({why})" for name, why in items[:NAMED])
    if len(items) > NAMED:
        text += f"; and {len(items) - NAMED:,} more"
    if more_at is not None and len(items) > NAMED:
        text += f" (all listed in {more_at})"
    return text


def ignored_text(ignored: Sequence[tuple[str, str]]) -> str:
    """A line naming the files of a folder that are not images Pillow reads ("" if none)."""
    if not ignored:
        return ""
    return f"ignored {len(ignored):,} file(s) that are not images: {_named(ignored)}"


@dataclass(frozen=True)
class Listing:
    """The images of a folder: sorted relative paths, and a digest of what they are (the
    paths with their sizes and modification times) that changes when any file does."""

    folder: Path
    files: tuple[str, ...]
    digest: str
    #: files among ``files`` that are not regular files or cannot be stat'ed, with the
    #: reason: unreadable images, never opened
    unusable: tuple[tuple[str, str], ...] = ()
    #: the other files under the folder (not images Pillow reads), with the reason
    ignored: tuple[tuple[str, str], ...] = ()

    def key(self, size: int, fit: str = DEFAULT_FIT) -> str:
        return hashlib.sha256(f"{FORMAT}-{FORMAT_VERSION}-{size}-{fit}-{self.digest}".encode()).hexdigest()[:32]


@dataclass
class PreparedFolder:
    """A prepared folder: ``images`` (N, C, S, S) uint8, memory-mapped from the cache;
    ``labels`` (N,) int64 from the first-level sub-folders (sorted names in ``classes``)
    when every image lies in one, else None; the relative paths of the ``skipped``
    unreadable files (each one's reason in ``reasons``); ``seconds`` spent preparing (0 when
    the cache was used); how non-square images were made square (``fit``); the folder's
    ``ignored`` files (not images), with the reason."""

    images: np.ndarray
    labels: np.ndarray | None
    classes: list[str]
    skipped: list[str]
    location: Path | None
    seconds: float
    reasons: dict[str, str] = field(default_factory=dict)
    fit: str = DEFAULT_FIT
    ignored: tuple[tuple[str, str], ...] = ()

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes)

    def skipped_text(self) -> str:
        """The first few skipped files with their reasons, and where the full list is."""
        where = None if self.location is None else self.location / META_FILE
        return _named([(f, self.reasons.get(f, "unreadable")) for f in self.skipped], where)


def list_images(folder: Path) -> Listing:
    """Every file under ``folder`` (recursively) whose suffix Pillow reads; raises when
    there is none, or when a sub-folder cannot be listed."""
    folder = Path(folder)
    readable, cannot = image_suffixes()
    entries, unusable, ignored = [], [], []
    top = os.stat(folder)
    seen = {(top.st_dev, top.st_ino)}

    def relative(path: str) -> str:
        return Path(path).relative_to(folder).as_posix()

    def cannot_list(exc: OSError) -> None:
        raise GantrixError(f"cannot list folder {exc.filename}: {exc.strerror or exc}; make it "
                           f"readable or move it out of {folder}")

    for root, dirs, names in os.walk(folder, onerror=cannot_list, followlinks=True):
        kept = []
        for name in sorted(dirs):
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError as exc:  # gone, or changed, since it was listed
                ignored.append((relative(path), stat_problem(path, exc)))
                continue
            if (st.st_dev, st.st_ino) in seen:  # a link back to a folder walked already
                ignored.append((relative(path), "a link to a folder listed already"))
                continue
            seen.add((st.st_dev, st.st_ino))
            kept.append(name)
        dirs[:] = kept
        for name in names:
            path = os.path.join(root, name)
            suffix = os.path.splitext(name)[1].lower()
            if suffix not in readable:
                ignored.append((relative(path), cannot.get(suffix, "not a type of image "
                                                                 "Pillow reads")))
                continue
            try:
                st = os.stat(path)
            except OSError as exc:
                unusable.append((relative(path), stat_problem(path, exc)))
                entries.append((relative(path), -1, -1))
                continue
            if not stat.S_ISREG(st.st_mode):
                unusable.append((relative(path), f"{file_kind(st.st_mode)}, not a regular file"))
            entries.append((relative(path), st.st_size, st.st_mtime_ns))
    if not entries:
        found = f"; found only {len(ignored):,} other file(s): {_named(sorted(ignored))}" if ignored else ""
        common = [s for s in COMMON_SUFFIXES if s in readable]
        raise GantrixError(f"no images in {folder} (files Pillow reads: {', '.join(common)} and "
                           f"{len(readable) - len(common)} other types){found}")
    entries.sort()
    digest = hashlib.sha256(json.dumps(entries).encode()).hexdigest()
    return Listing(folder, tuple(e[0] for e in entries), digest, tuple(sorted(unusable)),
                   tuple(sorted(ignored)))


def prepare_folder(folder: str | Path, size: int, *, skip_bad: bool = False,
                   workers: int | None = None, report: Callable[[str], None] | None = None,
                   progress: bool | None = None, fit: str = DEFAULT_FIT) -> PreparedFolder:
    """The images of ``folder`` at ``size``×``size``, from the cache or prepared into it.

    ``skip_bad`` skips files that cannot be read (they are listed in ``skipped``) instead
    of stopping with the name of the first. ``workers`` decode in parallel (default: one
    per CPU core this process may use). ``fit`` makes non-square images square (`FITS`).
    ``report`` gets a line when preparing starts and ends (default: standard error);
    ``progress`` draws a bar on a terminal (default: when standard error is one).
    """
    if fit not in FITS:
        raise GantrixError(f"image fit must be one of {', '.join(FITS)}, got {fit!r}")
    folder = Path(folder).expanduser().resolve()
    report = report or _stderr_line
    listing = list_images(folder)
    key = listing.key(size, fit)
    root = cache_dir() / "folders"
    cached = _open_checked(root / key, key, report)
    if cached is not None:
        cached.ignored = listing.ignored
        _refuse_skipped(cached, folder, skip_bad)
        if cached.skipped:
            report(f"{len(cached.skipped)} unreadable image file(s) of {folder} left out "
                   f"(--skip-bad-images), as when it was prepared: {cached.skipped_text()}")
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
        seconds = _prepare(listing, size, fit, scratch, key, skip_bad, workers, report, progress)
        if cacheable:
            location = _move_into_place(scratch, root / key)
            prepared = _open(location, key)
            _remove_stale(root, listing.folder, size, fit, key)
        else:
            prepared = _open(scratch, key)
            prepared.location = None
            shutil.rmtree(scratch, ignore_errors=True)  # the memory map keeps the data
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    prepared.seconds = seconds
    prepared.ignored = listing.ignored
    n, channels = prepared.images.shape[:2]
    mb = prepared.nbytes / 1e6
    report(f"prepared {n:,} images ({'grey' if channels == 1 else 'RGB'} {size}×{size}, "
           f"{FIT_WORDS[fit]}, {mb:,.1f} MB) in {seconds:.1f} s"
           + (f"; skipped {len(prepared.skipped)} unreadable: {prepared.skipped_text()}"
              if prepared.skipped else ""))
    if listing.ignored:
        report(ignored_text(listing.ignored))
    return prepared


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _refuse_skipped(prepared: PreparedFolder, folder: Path, skip_bad: bool) -> None:
    if prepared.skipped and not skip_bad:
        first = prepared.skipped[0]
        raise GantrixError(f"cannot read image {folder / first}: "
                           f"{prepared.reasons.get(first, 'unreadable')} ({len(prepared.skipped)} "
                           f"unreadable in {folder}); add --skip-bad-images to train without them")


# --------------------------------------------------------------------------- preparing


def _prepare(listing: Listing, size: int, fit: str, scratch: Path, key: str, skip_bad: bool,
             workers: int, report: Callable[[str], None], progress: bool | None) -> float:
    """Decode the listing into ``scratch`` (images, labels, then the description last);
    return the seconds it took."""
    start = time.perf_counter()
    files = listing.files
    paths = [str(listing.folder / f) for f in files]
    position = {f: i for i, f in enumerate(files)}
    bad: dict[int, str] = {position[f]: why for f, why in listing.unusable}
    _stop_unless_skipping(bad, paths, skip_bad)
    workers = 1 if len(paths) < IN_PROCESS_BELOW else min(workers, -(-len(paths) // CHUNK))
    with _mapper(workers) as imap:
        openable = [i for i in range(len(paths)) if i not in bad]
        chunks = _chunks([paths[i] for i in openable], CHUNK * 4)
        modes = dict(zip(openable, (m for chunk in imap(_probe, chunks) for m in chunk)))
        bad.update({i: error for i, (_, error) in modes.items() if error is not None})
        _stop_unless_skipping(bad, paths, skip_bad)
        readable = [i for i in range(len(paths)) if i not in bad]
        if not readable:
            raise GantrixError(f"none of the {len(paths)} images in {listing.folder} can be "
                               f"read: {_named([(files[i], bad[i]) for i in sorted(bad)])}")
        grey = all(modes[i][0] for i in readable)
        report(f"preparing {len(paths):,} images of {listing.folder} at {size}×{size} "
               f"({workers} worker{'s' * (workers > 1)}); kept in {scratch.parent} for the next runs")
        kept: list[int] = []
        crc = 0
        index_chunks = _chunks(readable, CHUNK)
        tasks = (([paths[i] for i in chunk], size, grey, fit) for chunk in index_chunks)
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
        raise GantrixError(f"none of the {len(paths)} images in {listing.folder} can be read: "
                           f"{_named([(files[i], bad[i]) for i in sorted(bad)])}")
    channels = 1 if grey else 3
    kept_files = [files[i] for i in kept]
    classes, labels = _labels(kept_files)
    labels_crc = None
    if labels is not None:
        with atomic_file(scratch / LABELS_FILE) as out:
            np.save(out, labels)
        labels_crc = _crc_file(scratch / LABELS_FILE)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "key": key,
            "folder": str(listing.folder), "shape": [len(kept), channels, size, size],
            "fit": fit, "crc32": crc, "labels_crc32": labels_crc, "classes": classes,
            "skipped": {files[i]: bad[i] for i in sorted(bad)}}
    write_atomic(scratch / META_FILE, json.dumps(meta, indent=1).encode())
    return time.perf_counter() - start


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


def _why(exc: Exception) -> str:
    """Why an image could not be read, in words. Decoders of untrusted files raise all
    kinds of exceptions (OSError, SyntaxError, struct.error, Pillow's DecompressionBombError
    and, under ``-W error``, DecompressionBombWarning, ...): each means the file is
    unreadable, not that preparing failed."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "Pillow does not recognise it as an image"
    if isinstance(exc, OSError):
        return exc.strerror if exc.strerror and exc.errno is not None else str(exc)
    if isinstance(exc, MemoryError):
        return "too large to decode in the memory there is"
    return f"{type(exc).__name__}: {exc}"


def _probe(paths: Sequence[str]) -> list[tuple[bool, str | None]]:
    """For each file: whether it is grey (from its header alone), or why it cannot be read."""
    from PIL import Image

    found = []
    for path in paths:
        try:
            with open_regular(path) as f, Image.open(f) as im:
                found.append((set(im.getbands()) - {"A", "a"} <= GREY_BANDS, None))
        except Exception as exc:  # any failure: this one file is unreadable (_why)
            found.append((False, _why(exc)))
    return found


def _decode_task(task: tuple[Sequence[str], int, bool, str]) -> list[tuple[bytes | None, str | None]]:
    paths, size, grey, fit = task
    return [_decode(path, size, grey, fit) for path in paths]


def _decode(path: str, size: int, grey: bool, fit: str) -> tuple[bytes | None, str | None]:
    """One image as (C, size, size) uint8 bytes, or why it cannot be read."""
    from PIL import Image

    mode = "L" if grey else "RGB"
    try:
        with open_regular(path) as f, Image.open(f) as im:
            im.draft(mode, (size, size))  # JPEG: decode at a reduced scale ≥ size
            pixels = np.asarray(_square(_eight_bit(im).convert(mode), size, fit), dtype=np.uint8)
    except Exception as exc:  # any failure: this one file is unreadable (_why)
        return None, _why(exc)
    if not grey:
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels).tobytes(), None


def _eight_bit(im):
    """A 16-bit (or 32-bit integer) grey image as 8-bit grey, 65535 as white: Pillow's own
    conversion clips every value above 255 to white."""
    from PIL import Image

    if not (im.mode == "I" or im.mode.startswith("I;16")):
        return im
    scaled = np.asarray(im, dtype=np.float64) / 257.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _square(im, size: int, fit: str):
    """``im`` at ``size``×``size``, made square by ``fit`` (`FITS`), resized bicubic."""
    from PIL import Image

    w, h = im.size
    if fit == "squash" or w == h:
        return im.resize((size, size), Image.Resampling.BICUBIC)
    if fit == "crop":  # the centre square, to a fraction of a pixel
        side = min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        return im.resize((size, size), Image.Resampling.BICUBIC, box=box)
    scale = size / max(w, h)  # pad: the whole image, its long side the size, black around
    inner = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
    canvas = Image.new(im.mode, (size, size))
    canvas.paste(inner, ((size - inner.width) // 2, (size - inner.height) // 2))
    return canvas


# --------------------------------------------------------------------------- the cache


def _crc_file(path: Path) -> int:
    crc = 0
    with open_regular(path) as f:
        while block := f.read(READ_BLOCK):
            crc = zlib.crc32(block, crc)
    return crc


def _remove(path: Path) -> None:
    """Remove ``path``, a folder or anything else, as far as possible."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def _move_into_place(scratch: Path, target: Path) -> Path:
    """Rename the complete ``scratch`` to ``target``, replacing a stale one; when another
    process put a complete cache there first, use that one."""
    for attempt in range(3):
        try:
            os.rename(scratch, target)
            break
        except OSError as exc:
            if attempt == 2:
                raise GantrixError(f"cannot put the prepared images in place at {target}: "
                                   f"{exc.strerror or exc}; remove it and run again") from None
            if _open_or_none(target, target.name) is not None:
                shutil.rmtree(scratch, ignore_errors=True)
                return target
            _remove(target)
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


def _remove_stale(root: Path, folder: Path, size: int, fit: str, key: str) -> None:
    """Remove the caches of earlier versions of ``folder`` at ``size`` and ``fit`` (or of
    an older format): a changed folder leaves its old prepared images behind otherwise
    (gigabytes for a large one)."""
    for meta in root.glob("*/" + META_FILE):
        if meta.parent.name == key:
            continue
        try:
            old = _description(meta)
            if (old.get("folder") == str(folder) and old["shape"][2] == size
                    and (old.get("fit") == fit or old.get("version") != FORMAT_VERSION)):
                shutil.rmtree(meta.parent, ignore_errors=True)
        except (*DAMAGED, IndexError):
            continue


def _open_or_none(location: Path, key: str) -> PreparedFolder | None:
    try:
        return _open(location, key)
    except DAMAGED:
        return None


def _open_checked(location: Path, key: str, report: Callable[[str], None]) -> PreparedFolder | None:
    """The cache at ``location`` when it is complete and intact; None when there is none or
    it is damaged (then it is removed, with a line saying so)."""
    if not os.path.lexists(location):
        return None
    try:
        return _open(location, key)
    except DAMAGED as exc:
        report(f"gantrix: the prepared images in {location} are damaged ({exc}); preparing them again")
        _remove(location)
        return None


def _description(path: Path) -> dict:
    """A cache's meta.json: a JSON object, else ValueError."""
    with open_regular(path) as f:
        meta = json.loads(f.read())
    if not isinstance(meta, dict):
        raise ValueError(f"its {META_FILE} holds a JSON {type(meta).__name__}, not an object")
    return meta


def _field(meta: dict, name: str, check: Callable[[object], bool], what: str):
    value = meta[name]
    if not check(value):
        raise ValueError(f"its {META_FILE}'s {name!r} is {value!r:.80}, not {what}")
    return value


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _open(location: Path, key: str) -> PreparedFolder:
    """Open a prepared folder after checking it; raises ValueError (or OSError, KeyError,
    ...: `DAMAGED`) when it is not exactly what its description says."""
    meta = _description(location / META_FILE)
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION or meta.get("key") != key:
        raise ValueError("it was written by another version or for other files")
    shape = tuple(_field(meta, "shape", lambda v: isinstance(v, list) and len(v) == 4
                         and all(_is_int(n) for n in v), "a list of 4 integers"))
    if shape[1] not in (1, 3) or shape[2] != shape[3] or shape[0] < 1 or shape[2] < 1:
        raise ValueError(f"its shape {shape} is not (N, 1 or 3, S, S)")
    crc = _field(meta, "crc32", _is_int, "an integer")
    labels_crc = _field(meta, "labels_crc32", lambda v: v is None or _is_int(v), "an integer or null")
    classes = _field(meta, "classes", lambda v: isinstance(v, list)
                     and all(isinstance(c, str) for c in v), "a list of names")
    skipped = _field(meta, "skipped", lambda v: isinstance(v, dict)
                     and all(isinstance(w, str) for w in v.values()), "an object of reasons")
    fit = _field(meta, "fit", lambda v: v in FITS, f"one of {', '.join(FITS)}")
    path = location / IMAGES_FILE
    expected = int(np.prod(shape))
    if path.stat().st_size != expected:
        raise ValueError(f"{path.name} holds {path.stat().st_size} bytes, not {expected}")
    if _crc_file(path) != crc:
        raise ValueError(f"{path.name} does not match its checksum")
    labels = None
    if labels_crc is not None:
        if _crc_file(location / LABELS_FILE) != labels_crc:
            raise ValueError(f"{LABELS_FILE} does not match its checksum")
        labels = np.load(location / LABELS_FILE, allow_pickle=False)
        if labels.shape != (shape[0],) or labels.dtype != np.int64:
            raise ValueError(f"{LABELS_FILE} is not {shape[0]} labels")
        if labels.min() < 0 or labels.max() >= len(classes):
            raise ValueError(f"{LABELS_FILE} does not match the {len(classes)} classes")
    elif classes:
        raise ValueError(f"it names {len(classes)} classes but has no labels")
    images = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
    return PreparedFolder(images, labels, list(classes), sorted(skipped), location, 0.0,
                          reasons=dict(skipped), fit=fit)


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
