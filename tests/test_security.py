"""What an inbox writer cannot make the daemon do: open symlinks or special files, write through a
symlink planted in an output tree, write outside its folders, copy input content into an error
record, or create outputs more permissive than configured and the umask allows.

test_daemon_flow.test_ignored_and_special_entries_are_left_alone already covers a symlinked file
and a FIFO in the inbox; here are the rest.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from ocr_daemon import safefs
from ocr_daemon.config import AsposeSettings
from tests import hostile_files as hf
from tests.harness import (
    files_under,
    make_config,
    run_once,
    subprocess_env,
    wait_for,
    write_config,
)
from tests.test_hostile_inputs import InThread

SECRET = b"TOP-SECRET-CANARY-7f3a"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        name: (folder / name).read_bytes()
        for name in files_under(folder)
        if not (folder / name).is_symlink()
    }


# -- the inbox -------------------------------------------------------------------------------


def test_special_files_and_symlinked_folders_in_the_inbox_are_never_opened(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path / "d")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(SECRET)
    os.symlink(outside, config.inbox / "linked-folder.png")
    os.symlink(outside / "secret.png", config.inbox / "dangling-or-not.png")
    os.mknod(config.inbox / "device.png", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(config.inbox / "socket.png"))
    (config.inbox / "real.png").write_bytes(b"fine")
    before = snapshot(outside)

    assert run_once(config) == 0

    sock.close()
    assert files_under(config.outbox) == ["real.txt"]
    assert sorted(os.listdir(config.inbox)) == [
        "dangling-or-not.png", "device.png", "linked-folder.png", "socket.png",
    ]  # fmt: skip
    assert snapshot(outside) == before and os.listdir(outside) == ["secret.png"]


def test_file_swapped_for_a_symlink_while_queued_leaks_nothing(tmp_path: Path) -> None:
    """A settled file replaced by a symlink to a secret before its turn: refused at commit."""
    config = make_config(tmp_path / "d", workers=1)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(SECRET)
    (config.inbox / "a-slow-hold.png").write_bytes(b"hold")
    (config.inbox / "b-swapped.png").write_bytes(b"innocent")
    with InThread(config) as run:
        wait_for(lambda: run.busy() == 1, timeout=60, interval=0.02)
        tmp = config.inbox / ".swap"
        os.symlink(outside / "secret.png", tmp)
        os.replace(tmp, config.inbox / "b-swapped.png")
    assert run.code == 0
    assert files_under(config.outbox) == ["a-slow-hold.txt"]
    assert (config.inbox / "b-swapped.png").is_symlink(), "left alone"
    for root in (config.outbox, config.processed, config.failed):
        for name in files_under(root):
            assert SECRET not in (root / name).read_bytes()
    assert (outside / "secret.png").read_bytes() == SECRET


# -- planted symlinks in the output trees ---------------------------------------------------


@pytest.mark.parametrize("tree", ["outbox", "processed", "failed"])
@pytest.mark.parametrize("where", ["subfolder", "exact-name"])
def test_symlink_planted_in_an_output_tree_never_redirects_a_write(
    tmp_path: Path, tree: str, where: str
) -> None:
    config = make_config(tmp_path / "d", max_attempts=1)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"must stay")
    name = "corrupt.png" if tree == "failed" else "scan.png"
    (config.inbox / "sub").mkdir()
    (config.inbox / "sub" / name).write_bytes(b"input")
    root = getattr(config, tree)
    (root / "sub").mkdir(parents=True) if where == "exact-name" else root.mkdir(parents=True)
    target = {
        "outbox": "sub/scan.txt",
        "processed": f"sub/{name}",
        "failed": "sub/corrupt.png.error.json",
    }[tree]
    if where == "subfolder":
        os.symlink(outside, root / "sub")
    else:
        os.symlink(outside / "victim", root / target)

    run_once(config)

    assert os.listdir(outside) == ["victim"], "nothing written through the link"
    assert (outside / "victim").read_bytes() == b"must stay"
    if where == "subfolder":  # the folder is refused: retried, then the input stays put
        assert files_under(config.inbox) == [f"sub/{name}"]
    else:  # the name is taken: the next free name is used beside the link
        produced = [n for n in files_under(root) if not (root / n).is_symlink()]
        assert any(" (2)" in n for n in produced), produced
        assert files_under(config.inbox) == []


def test_paths_with_dot_dot_or_symlinks_are_refused_by_safefs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "link")
    for rel in ("../escape.txt", "a/../../escape.txt", "link/escape.txt", "./x/../../e"):
        with pytest.raises(OSError, match=r"refusing path component|symlink or not a directory"):
            safefs.write_new(root, PurePosixPath(rel), b"x", 0o600, "t")
    assert os.listdir(tmp_path / "outside") == []
    assert sorted(os.listdir(tmp_path)) == ["outside", "root"]


def test_every_output_stays_under_its_root(tmp_path: Path) -> None:
    config = make_config(tmp_path / "d")
    names = ["..png", "...png", "-", " ", "\\..\\..\\x.png", "a\\b.png", "~root.png"]
    for i, name in enumerate(names):
        (config.inbox / f"n{i}").mkdir()
        (config.inbox / f"n{i}" / name).write_bytes(b"x")
    (config.inbox / "x-corrupt.png").write_bytes(b"x")
    before = set(os.listdir(tmp_path))

    run_once(config)

    assert set(os.listdir(tmp_path)) == before
    assert set(os.listdir(tmp_path / "d")) == {"inbox", "outbox", "processed", "failed", "state"}
    for root in (config.outbox, config.processed, config.failed):
        for dirpath, _dirs, files in os.walk(root):
            for file in files:
                real = Path(os.path.realpath(Path(dirpath, file)))
                assert real.is_relative_to(root.resolve()), real
    assert len(files_under(config.outbox)) == len(names) - 2
    assert files_under(config.inbox) == ["n0/..png", "n1/...png"], "hidden names: left alone"


# -- what error records say -----------------------------------------------------------------


@pytest.mark.slow
def test_error_records_hold_the_name_but_no_content(tmp_path: Path) -> None:
    """Through the real engine: inputs carrying a canary in every place an error could quote."""
    config = make_config(
        tmp_path, engine="aspose", workers=1, aspose=AsposeSettings(language="LATIN"),
    )  # fmt: skip
    png = hf.good("PNG")
    inputs = {
        "text.png": b"text " + SECRET + b"\n",
        "truncated.png": png[:33] + b"\0\0\0\x10tEXtComment\0" + SECRET + png[33:200],
        "garbage.pdf": b"%PDF-1.4\n" + SECRET * 40 + b"\n%%EOF\n",
        "cut.pdf": b"%PDF-1.4\n1 0 obj << /Title (" + SECRET + b") >> endobj\n",
        "elf.png": hf.ELF + SECRET,
        "header-" + SECRET.decode()[:4] + ".tif": b"II*\x00" + SECRET * 3,
    }
    for name, data in inputs.items():
        (config.inbox / name).write_bytes(data)

    assert run_once(config) == 1

    records = [n for n in files_under(config.failed) if n.endswith(".error.json")]
    assert len(records) == len(inputs)
    keys = {"file", "moved_to", "reason", "message", "attempts", "first_seen", "failed_at",
            "engine", "daemon_version"}  # fmt: skip
    for name in records:
        raw = (config.failed / name).read_bytes()
        assert SECRET not in raw, raw
        record = json.loads(raw)
        assert set(record) == keys
        assert record["file"] in inputs


# -- modes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("umask", "output_mode", "expected"),
    [(0o022, "0640", 0o640), (0o077, "0644", 0o600), (0o027, "0666", 0o640), (0, "0600", 0o600)],
)
def test_outputs_get_the_configured_mode_limited_by_the_umask(
    tmp_path: Path, umask: int, output_mode: str, expected: int
) -> None:
    config = write_config(tmp_path, output_mode=output_mode, settle_seconds=0.1)
    (tmp_path / "inbox" / "sub").mkdir()
    (tmp_path / "inbox" / "sub" / "scan.png").write_bytes(b"x")
    (tmp_path / "inbox" / "sub" / "corrupt.png").write_bytes(b"x")
    code = (
        f"import os, sys; os.umask({umask:#o}); from ocr_daemon.cli import main; "
        f"sys.exit(main(['once', '--config', {str(config)!r}]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    made = [tmp_path / "outbox/sub/scan.txt", tmp_path / "failed/sub/corrupt.png.error.json"]
    for path in made:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
        assert stat.S_IMODE(path.stat().st_mode) & umask == 0
    for folder in (tmp_path / "outbox/sub", tmp_path / "failed/sub"):
        assert stat.S_IMODE(folder.stat().st_mode) & umask == 0
        assert stat.S_IMODE(folder.stat().st_mode) & 0o007 == 0, "never world-accessible"
