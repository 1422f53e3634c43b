"""The daemon end to end with the real Aspose engine: what a user sees in the outbox and failed/.

Evaluation mode (no licence) returns a prefix of each page plus a trial notice; the assertions hold
in both modes: the sidecar starts with the page's first words, pages are joined with a form feed.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.conftest import render_page
from tests.harness import (
    error_record,
    files_under,
    make_config,
    run_once,
    start,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow
NOTICE = "Trial Licenses"
WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
)


def page_lines(tag: str) -> list[str]:
    return [f"{tag} {word} line number {i} of the daemon test page" for i, word in enumerate(WORDS)]


def first_words(text: str, count: int = 3) -> list[str]:
    return text.split()[:count]


def test_every_format_and_multipage_through_the_daemon(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, engine="aspose", workers=2, settle_seconds=0.2, ocr_timeout_seconds=600
    )
    inbox = config.inbox
    render_page(page_lines("Png")).save(inbox / "page.png")
    render_page(page_lines("Jpeg")).save(inbox / "photo.jpg")
    (inbox / "scans").mkdir()
    pages = [render_page(page_lines(tag)) for tag in ("First", "Second", "Third")]
    pages[0].save(inbox / "scans/three.tif", save_all=True, append_images=pages[1:])
    pages[0].save(inbox / "scans/three.pdf", save_all=True, append_images=pages[1:])
    render_page(page_lines("Webp")).save(inbox / "lies.pdf.png", format="WEBP")
    (inbox / "broken.png").write_bytes((inbox / "page.png").read_bytes()[:3000])
    (inbox / "notes.png").write_text("plain text pretending to be an image\n")

    assert run_once(config) == 1  # two bad files

    out = config.outbox
    expected = ["lies.pdf.txt", "page.txt", "photo.txt", "scans/three (2).txt", "scans/three.txt"]
    assert sorted(files_under(out)) == sorted(expected)
    assert first_words((out / "page.txt").read_text()) == ["Png", "alpha", "line"]
    assert first_words((out / "photo.txt").read_text()) == ["Jpeg", "alpha", "line"]
    assert first_words((out / "lies.pdf.txt").read_text()) == ["Webp", "alpha", "line"]
    for name in ("scans/three.txt", "scans/three (2).txt"):
        sidecar_pages = (out / name).read_text().split("\f")
        assert [first_words(p, 1) for p in sidecar_pages] == [["First"], ["Second"], ["Third"]]
    if NOTICE in (out / "page.txt").read_text():
        assert all(NOTICE in p for p in (out / "scans/three.txt").read_text().split("\f"))
    assert error_record(config, "broken.png")["reason"] == "corrupt"
    assert error_record(config, "notes.png")["reason"] == "unsupported"
    assert files_under(config.inbox) == []
    assert sorted(files_under(config.processed)) == sorted(
        ["lies.pdf.png", "page.png", "photo.jpg", "scans/three.pdf", "scans/three.tif"]
    )


def test_sigterm_during_a_real_recognition_finishes_it(
    tmp_path: Path, daemon_factory: list
) -> None:
    config = write_config(tmp_path, engine="aspose", workers=1, settle_seconds=0.2)
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    lines = [f"Dense line {i} with enough words to keep the engine busy a while" for i in range(40)]
    render_page(lines, size=(2480, 3508), font_size=36).save(tmp_path / "inbox/.a4.tmp", "PNG")
    (tmp_path / "inbox/.a4.tmp").rename(tmp_path / "inbox/a4.png")
    wait_for(lambda: daemon.status().get("in_flight") == 1, timeout=60, interval=0.02)

    daemon.signal(signal.SIGTERM)

    assert daemon.wait(timeout=120) == 0
    assert first_words((tmp_path / "outbox/a4.txt").read_text()) == ["Dense", "line", "0"]
    assert files_under(tmp_path / "processed") == ["a4.png"]


@pytest.mark.parametrize("engine", ["aspose", "tesseract"])
def test_start_up_says_what_the_licence_state_means(
    tmp_path: Path, daemon_factory: list, engine: str
) -> None:
    """Without a licence Aspose gives a fragment of each page, and the start-up says so with the
    switch to Tesseract; Tesseract needs no licence and is never called licensed."""
    config = write_config(tmp_path, engine=engine, workers=1)
    daemon = start(daemon_factory, config, command="once")
    assert daemon.wait(timeout=120) == 0
    (started,) = daemon.events("daemon.started")
    warnings = daemon.events("engine.evaluation_mode")
    if engine == "tesseract":
        assert started["licence"] == "no licence needed"
        assert warnings == []
    elif started["licence"] != "licensed":
        assert started["licence"] == "evaluation mode: a fragment of each page"
        (warning,) = warnings
        assert "at most 300 characters, often much less" in str(warning["message"])
        assert 'engine = "tesseract"' in str(warning["message"])


def _picture(size: tuple[int, int] = (1800, 1200)) -> Image.Image:
    """Visible content that is not text: a grey block crossed by a thick line."""
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    draw.rectangle((300, 200, size[0] - 300, size[1] - 200), fill=(90, 90, 90))
    draw.line((0, 0, *size), fill="black", width=25)
    return page


@pytest.mark.parametrize("engine", ["aspose", "tesseract"])
def test_a_page_without_text_is_never_silently_done(
    tmp_path: Path, daemon_factory: list, engine: str
) -> None:
    """A page that comes back without text (blank, or marks the engine cannot read) is named in
    a warning-level `file.done`; a page with text is not."""
    config = write_config(tmp_path, engine=engine, workers=1, settle_seconds=0.2)
    inbox = tmp_path / "inbox"
    text = render_page(page_lines("Mixed"))
    text.save(inbox / "mixed.tif", save_all=True, append_images=[_picture(), text])
    render_page(page_lines("Plain")).save(inbox / "plain.png")
    daemon = start(daemon_factory, config, command="once")
    assert daemon.wait(timeout=300) == 0

    done = {e["path"]: e for e in daemon.events("file.done")}
    assert done["mixed.tif"]["level"] == "warning"
    assert done["mixed.tif"]["empty_pages"] == [2]
    assert "no text recognised" in str(done["mixed.tif"]["why"])
    assert done["plain.png"]["level"] == "info"
    assert "empty_pages" not in done["plain.png"]


def _engine_processes(daemon_pid: int) -> list[int]:
    """The daemon's spawned engine processes (not multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{daemon_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


def test_an_engine_process_killed_while_warming_up_at_start_is_started_again(
    tmp_path: Path, daemon_factory: list
) -> None:
    """Found by the soak: a kill during the start-up warm-up used to stop the daemon (exit
    75). Now that engine process is started again and the daemon runs."""
    config = write_config(tmp_path, engine="aspose", workers=1, settle_seconds=0.2)
    daemon = start(daemon_factory, config)
    victim = wait_for(lambda: _engine_processes(daemon.proc.pid), timeout=60, interval=0.01)[0]
    os.kill(victim, signal.SIGKILL)
    daemon.wait_running()
    render_page(page_lines("Warm")).save(tmp_path / "inbox/after.png")
    wait_for(lambda: files_under(tmp_path / "outbox") == ["after.txt"], timeout=120)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0

    (crashed,) = daemon.events("worker.warm_up_crashed")
    assert "SIGKILL" in str(crashed["error"])
    assert first_words((tmp_path / "outbox/after.txt").read_text()) == ["Warm", "alpha", "line"]
