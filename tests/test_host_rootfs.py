"""Images of this machine's own files (harness/host/rootfs.py, harness/host/service_images.py): a
program's layer carries every library it loads, and runs from that layer alone; layers are
reproducible; the [services.*] table is checked where it is read."""
from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness.host.images import ImageError
from harness.host.rootfs import RootfsError, elf_files, linked_libraries, write_layer
from harness.host.service_images import load_services

LS = Path("/usr/bin/ls")  # dynamic on Debian: libselinux, which itself needs libpcre2-8 (a transitive library)


def _members(layer: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(layer) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_the_libraries_of_a_program_include_what_its_libraries_need() -> None:
    libraries, missing = linked_libraries([LS])
    names = {p.name for p in libraries}
    assert {"libc.so.6", "libselinux.so.1", "libpcre2-8.so.0", "ld-linux-x86-64.so.2"} <= names, names
    assert missing == []


def test_a_program_runs_from_its_layer_alone(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    layer = write_layer(tmp_path / "layer.tar", programs=[LS], links=[("bin/sh", "busybox")])
    members = _members(layer.path)
    # Debian's merged /usr: the loader's path /lib64/ld-linux-x86-64.so.2 resolves through links, kept as links
    assert members["lib64"].issym() and members["lib64"].linkname == "usr/lib64"
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members.values())
    root = tmp_path / "root"
    with tarfile.open(layer.path) as tar:
        tar.extractall(root, filter="fully_trusted")
    done = subprocess.run([shutil.which("chroot") or "/usr/sbin/chroot", str(root), str(LS), "/usr"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["bin", "lib", "lib64"], done.stdout  # only what the layer holds


def test_a_tree_is_copied_with_its_links_minus_what_is_excluded_and_the_layer_is_reproducible(tmp_path: Path) -> None:
    tree = tmp_path / "env"
    (tree / "bin").mkdir(parents=True)
    (tree / "skip").mkdir()
    (tree / "skip" / "big").write_bytes(b"x" * 100)
    shutil.copy2(LS, tree / "bin" / "tool")
    (tree / "bin" / "alias").symlink_to("tool")
    assert list(elf_files(tree, exclude=[tree / "skip"])) == [tree / "bin" / "tool"]
    first = write_layer(tmp_path / "a.tar", trees=[tree], exclude=[tree / "skip"])
    os.utime(tree / "bin" / "tool", (1, 1))  # the layer does not depend on times
    second = write_layer(tmp_path / "b.tar", trees=[tree], exclude=[tree / "skip"])
    assert first.diff_id == second.diff_id and first.size == second.size
    members = _members(first.path)
    rel = str(tree).lstrip("/")
    assert members[f"{rel}/bin/alias"].issym() and members[f"{rel}/bin/alias"].linkname == "tool"
    assert f"{rel}/bin/tool" in members and not any(n.startswith(f"{rel}/skip/") for n in members)
    assert any(n.endswith("libselinux.so.1") for n in members)  # the copied program's libraries came along


def test_a_missing_path_is_named() -> None:
    with pytest.raises(RootfsError, match="/nonexistent/venv does not exist"):
        write_layer(Path("/tmp/never.tar"), trees=[Path("/nonexistent/venv")])


def test_the_service_images_table_is_checked_where_it_is_read(tmp_path: Path) -> None:
    specs = load_services()
    assert set(specs) == {"mlflow", "s3"}
    assert specs["mlflow"].env == {"role": "tracking"} and not specs["mlflow"].fake
    assert specs["s3"].fake and "403" in specs["s3"].fake  # the stand-in says why MinIO is not built
    path = tmp_path / "images.toml"
    head = '[services.x]\nupstream = "u:1"\nsource = "s"\n'
    for extra, message in {'local = "dev.local/x"\nenv = { pip = ["x"] }': "needs env",
                           'local = "dev.local/x"\nenv = { role = "t" }\nport = 1': "unknown key",
                           'local = "dev.local/x:1"\nenv = { role = "t" }': "leave the tag off",
                           'env = { role = "t" }': "needs local"}.items():
        path.write_text(head + extra + "\n")
        with pytest.raises(ImageError, match=message):
            load_services(path)
