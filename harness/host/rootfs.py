"""A container root filesystem made of this machine's own files: programs and whole folders copied at
the paths they have here, with every shared library their ELF files load, as one uncompressed layer.

This is how the harness's in-cluster services get images on the host cluster, where no registry is
reachable: a role environment (a uv venv whose ``pyvenv.cfg`` names its interpreter by absolute path,
and whose scripts' shebangs do too) runs unchanged when the venv and its interpreter's prefix sit at
the same paths in the image, and a Debian program runs when the libraries it was linked against are
beside it. Which libraries: what this machine's dynamic loader resolves for each ELF file (``ldd``,
batched), outside the folders already copied; the loader itself comes with them. Symbolic links on
the way to each file (Debian's merged /usr: /lib -> usr/lib) are kept as links, so every path the
loader was given resolves in the image as it does here.

The layer is reproducible from the same files: entries sorted, owner 0:0, mtime 0, no user names.
It is written straight to a file (the venvs are hundreds of MB), hashing as it goes.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.procs import run_command

__all__ = ["Layer", "RootfsError", "elf_files", "linked_libraries", "write_layer"]

_LDD_BATCH = 200
_LDD_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")


class RootfsError(RuntimeError):
    """A file the image needs is missing, or the loader could not be asked."""


@dataclass(frozen=True)
class Layer:
    path: Path
    diff_id: str  # sha256:... of the (uncompressed) tar
    size: int
    files: int
    libraries: tuple[str, ...]  # the machine's libraries it carries
    missing: tuple[str, ...] = field(default=())  # sonames no file of it could resolve (optional modules)


def elf_files(root: Path, *, exclude: Iterable[Path] = ()) -> Iterator[Path]:
    """Regular files under ``root`` that start with the ELF magic (programs and shared objects)."""
    skip = {Path(p) for p in exclude}
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if here / d not in skip)
        for name in sorted(names):
            path = here / name
            try:
                if not stat.S_ISREG(path.lstat().st_mode):
                    continue
                with path.open("rb") as fh:
                    if fh.read(4) == b"\x7fELF":
                        yield path
            except OSError:
                continue


def linked_libraries(elves: Sequence[Path], *, inside: Sequence[Path] = ()) -> tuple[list[Path], list[str]]:
    """The shared libraries (and the loader) that ``elves`` load, as this machine's loader resolves
    them, minus those under ``inside``; and the sonames it could not resolve."""
    found: set[Path] = set()
    missing: set[str] = set()
    roots = [str(p).rstrip("/") + "/" for p in inside]
    for start in range(0, len(elves), _LDD_BATCH):
        batch = [str(p) for p in elves[start:start + _LDD_BATCH]]
        try:
            out = run_command(["ldd", *batch], what="ldd", timeout=120)
        except FileNotFoundError:
            raise RootfsError("ldd is missing: apt-get install -y libc-bin") from None
        # ldd exits 1 when any file of the batch is not dynamic ("not a dynamic executable"): fine.
        for line in out.stdout.splitlines():
            if m := _LDD_LINE.match(line):
                lib = m.group(1)
                if not any(lib.startswith(r) for r in roots):
                    found.add(Path(lib))
            elif m := _NOT_FOUND.match(line):
                missing.add(m.group(1))
    return sorted(found), sorted(missing)


def _links_on_the_way(path: Path) -> list[tuple[Path, str]]:
    """(link, its target) for every symbolic link met while resolving ``path`` from /."""
    out: list[tuple[Path, str]] = []
    current = Path("/")
    for part in path.parts[1:]:
        step = current / part
        hops = 0
        while step.is_symlink() and hops < 40:
            target = os.readlink(step)
            out.append((step, target))
            step = (step.parent / target) if not os.path.isabs(target) else Path(target)
            step = Path(os.path.normpath(step))
            hops += 1
        current = step
    return out


class _HashingWriter:
    def __init__(self, fh) -> None:
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.fh.flush()


def write_layer(out: Path, *, trees: Sequence[Path] = (), programs: Sequence[Path] = (),
                exclude: Sequence[Path] = (), extra: Sequence[tuple[str, bytes | None, int]] = (),
                links: Sequence[tuple[str, str]] = ()) -> Layer:
    """Write the layer to ``out``: ``trees`` (folders, recursively, minus ``exclude``) and ``programs``
    at their own paths, every library their ELF files load, ``extra`` files (path, content or None
    for a folder, mode) and ``links`` (path, target)."""
    for p in (*trees, *programs):
        if not p.exists():
            raise RootfsError(f"{p} does not exist (the image copies it at this path)")
    elves = [e for t in trees for e in elf_files(t, exclude=exclude)] + [p.resolve() for p in programs]
    libraries, missing = linked_libraries(elves, inside=trees)

    entries: dict[str, tuple[str, Path | bytes | None, int]] = {}  # arcname -> (kind, source, mode)

    def add_parents(rel: str) -> None:
        parts = rel.split("/")[:-1]
        for i in range(len(parts)):
            entries.setdefault("/".join(parts[: i + 1]), ("dir", None, 0o755))

    def add_path(path: Path) -> None:
        """``path`` as the loader names it: the links on the way, then the file itself."""
        for link, target in _links_on_the_way(path):
            rel = str(link).lstrip("/")
            add_parents(rel)
            entries[rel] = ("link", target.encode(), 0o777)
        real = path.resolve()
        rel = str(real).lstrip("/")
        add_parents(rel)
        entries[rel] = ("file", real, stat.S_IMODE(real.stat().st_mode))

    skip = {str(p) for p in exclude}
    for tree in trees:
        for link, target in _links_on_the_way(tree):
            rel = str(link).lstrip("/")
            add_parents(rel)
            entries[rel] = ("link", target.encode(), 0o777)
        tree = tree.resolve()
        add_parents(str(tree).lstrip("/"))
        for folder, dirs, names in os.walk(tree):
            here = Path(folder)
            dirs[:] = [d for d in dirs if str(here / d) not in skip]
            rel_dir = str(here).lstrip("/")
            entries[rel_dir] = ("dir", None, stat.S_IMODE(here.stat().st_mode))
            for name in (*dirs, *names):
                path = here / name
                rel = f"{rel_dir}/{name}"
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    entries[rel] = ("link", os.readlink(path).encode(), 0o777)
                elif stat.S_ISREG(st.st_mode):
                    entries[rel] = ("file", path, stat.S_IMODE(st.st_mode))
    for program in programs:
        add_path(program)
    for lib in libraries:
        add_path(lib)
    for rel, data, mode in extra:
        rel = rel.lstrip("/")
        add_parents(rel)
        entries[rel] = ("dir", None, mode) if data is None else ("bytes", data, mode)
    for rel, target in links:
        rel = rel.lstrip("/")
        add_parents(rel)
        entries[rel] = ("link", target.encode(), 0o777)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    count = 0
    inodes: dict[tuple[int, int], str] = {}
    with tmp.open("wb") as raw:
        sink = _HashingWriter(raw)
        with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in sorted(entries):
                kind, source, mode = entries[rel]
                info = tarfile.TarInfo(rel)
                info.mode, info.uid, info.gid, info.mtime = mode, 0, 0, 0
                info.uname = info.gname = ""
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif kind == "link":
                    info.type, info.linkname = tarfile.SYMTYPE, source.decode()
                    tar.addfile(info)
                elif kind == "bytes":
                    info.size = len(source)
                    tar.addfile(info, io.BytesIO(source))
                else:
                    st = source.stat()
                    ident = (st.st_dev, st.st_ino)
                    if st.st_nlink > 1 and ident in inodes:  # a hard link: stored once
                        info.type, info.linkname = tarfile.LNKTYPE, inodes[ident]
                        tar.addfile(info)
                        continue
                    inodes[ident] = rel
                    info.size = st.st_size
                    with source.open("rb") as fh:
                        tar.addfile(info, fh)
                count += 1
        digest, size = sink.sha.hexdigest(), sink.size
    os.replace(tmp, out)
    return Layer(out, f"sha256:{digest}", size, count, tuple(str(p) for p in libraries), tuple(missing))
