"""Packed run folders: a run's many small files (one CIF per proposal, per relaxed cell, per relaxation chunk) kept
in one zip archive per folder, so that a repository of runs stays light.

A run folder's ``structures/``, ``structures_relaxed/``, ``relax_state/`` and ``dft_state/`` are packed into
``structures.zip``, ``structures_relaxed.zip``, ``relax_state.zip`` and ``dft_state.zip`` beside them
(:func:`pack`); each member is the file's exact bytes, so a crystal read from the archive is the crystal read
from the loose file. Readers go through :func:`read_text`, :func:`exists` and :func:`names`, which look at the
loose file first, then in the archive: a folder may be packed, loose, or both (a later step writes loose files;
:func:`pack` merges them in). ``unzip`` or ``smoacs-bench export`` gives the files back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

PACKED_DIRS = ("structures", "structures_relaxed", "relax_state", "dft_state")
SUFFIX = ".zip"
_DATE = (2020, 1, 1, 0, 0, 0)   # a fixed member date: packing the same files gives the same bytes


def archive_of(folder: str | Path) -> Path:
    """The archive that packs ``folder`` (``<parent>/<name>.zip``)."""
    folder = Path(folder)
    return folder.parent / f"{folder.name}{SUFFIX}"


def _members(archive: Path) -> dict[str, zipfile.ZipInfo]:
    if not archive.is_file():
        return {}
    with zipfile.ZipFile(archive) as z:
        return {i.filename: i for i in z.infolist() if not i.is_dir()}


def read_bytes(path: str | Path) -> bytes | None:
    """The bytes of ``path``: the loose file, else its member in the folder's archive; None when neither exists."""
    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    archive = archive_of(path.parent)
    if not archive.is_file():
        return None
    with zipfile.ZipFile(archive) as z:
        try:
            return z.read(path.name)
        except KeyError:
            return None


def read_text(path: str | Path) -> str | None:
    data = read_bytes(path)
    return None if data is None else data.decode("utf-8")


def exists(path: str | Path) -> bool:
    path = Path(path)
    return path.is_file() or path.name in _members(archive_of(path.parent))


def names(folder: str | Path) -> list[str]:
    """The file names in ``folder``, loose or packed, sorted."""
    folder = Path(folder)
    loose = {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
    return sorted(loose | set(_members(archive_of(folder))))


def pack(run: str | Path, dirs: tuple[str, ...] = PACKED_DIRS) -> list[Path]:
    """Pack each of ``dirs`` of the run folder ``run`` into its archive (loose files replace archived ones of the
    same name), atomically, then remove the loose folder. Returns the archives written."""
    run = Path(run)
    written = []
    for name in dirs:
        folder = run / name
        if not folder.is_dir():
            continue
        archive = archive_of(folder)
        contents: dict[str, bytes] = {}
        if archive.is_file():
            with zipfile.ZipFile(archive) as z:
                contents = {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
        contents.update({p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})
        fd, tmp = tempfile.mkstemp(dir=run, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
                for member in sorted(contents, key=_natural):
                    info = zipfile.ZipInfo(member, date_time=_DATE)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    z.writestr(info, contents[member])
            os.replace(tmp, archive)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        shutil.rmtree(folder)
        written.append(archive)
    return written


def unpack(folder: str | Path) -> None:
    """Put the archive of ``folder`` back as loose files (loose files already there are kept) and remove it: for
    a step that rewrites the folder's files in place (the relaxation's resumable state)."""
    folder = Path(folder)
    archive = archive_of(folder)
    if not archive.is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as z:
        for member in z.namelist():
            target = folder / Path(member).name
            if not member.endswith("/") and not target.exists():
                target.write_bytes(z.read(member))
    archive.unlink()


def remove(folder: str | Path) -> None:
    """Remove ``folder`` and its archive (a run started afresh)."""
    folder = Path(folder)
    if folder.is_dir():
        shutil.rmtree(folder)
    if archive_of(folder).is_file():
        archive_of(folder).unlink()


def _natural(name: str) -> tuple:
    stem, _, ext = name.partition(".")
    return (0, int(stem), ext) if stem.isdigit() else (1, name, ext)
