"""Per-folder rules: glob matching, loading, first-match merging, `check --explain`, and a daemon
run where a rule switches engine settings and output options for one folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from ocr_daemon import cli, worker
from ocr_daemon.config import Config, load_config
from ocr_daemon.config.rules import Rule
from ocr_daemon.engines.base import EngineSettings
from ocr_daemon.errors import ConfigError
from tests.conftest import render_page
from tests.harness import DOUBLE, files_under, make_config, run_once
from tests.test_engine import LINES
from tests.test_tesseract import FRENCH

RULES = """
languages = ["eng"]
[[rules]]
match = "invoices/fr/**"
engine = "tesseract"
languages = ["fra", "eng"]
on_success = "keep"

[[rules]]
match = "invoices/**"
ocr_timeout_seconds = 30.0
output_mode = "0600"

[[rules]]
match = "**/*.jpg"
orientation = false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ocr-daemon.toml"
    path.write_text(f'inbox = "in"\nstate_dir = "state"\n{text}\n')
    return path


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("invoices/fr/**", "invoices/fr/a.pdf", True),
        ("invoices/fr/**", "invoices/fr/2024/q1/a.pdf", True),
        ("invoices/fr/**", "invoices/fra/a.pdf", False),
        ("invoices/fr/**", "invoices/a.pdf", False),
        ("invoices/*.pdf", "invoices/a.pdf", True),
        ("invoices/*.pdf", "invoices/x/a.pdf", False),
        ("**/*.jpg", "a.jpg", True),
        ("**/*.jpg", "x/y/a.jpg", True),
        ("**/*.jpg", "x/y/a.jpeg", False),
        ("scan-??.png", "scan-01.png", True),
        ("scan-??.png", "scan-1.png", False),
        ("a+b (1)/*", "a+b (1)/c.png", True),
    ],
)
def test_glob_matching(pattern: str, path: str, matches: bool) -> None:
    assert Rule(pattern).matches(path) is matches


def test_first_matching_rule_merges_over_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, RULES))
    french, rule = config.for_path("invoices/fr/jan.pdf")
    assert rule is not None and rule.number == 1
    assert (french.engine, french.languages, french.on_success) == (
        "tesseract",
        ("fra", "eng"),
        "keep",
    )
    assert french.ocr_timeout_seconds == config.ocr_timeout_seconds  # not set by rule 1
    other, rule = config.for_path("invoices/de/jan.pdf")
    assert rule is not None and rule.number == 2
    assert (other.engine, other.ocr_timeout_seconds, other.output_mode) == ("aspose", 30.0, 0o600)
    photo, rule = config.for_path("invoices/fr/x.jpg")  # rule 1 comes first
    assert rule is not None and rule.number == 1 and photo.orientation
    photo, rule = config.for_path("phone/x.jpg")
    assert rule is not None and rule.number == 3 and not photo.orientation
    plain, rule = config.for_path("letters/a.png")
    assert rule is None and plain == config
    assert EngineSettings.of(french) == EngineSettings("tesseract", ("fra", "eng"), True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rules]]\nengine = 'tesseract'", r"rules\[1\]\.match must be a glob"),
        ("[[rules]]\nmatch = '/abs/**'", r"rules\[1\]\.match must be a glob relative"),
        ("[[rules]]\nmatch = 'a/**'\nworkers = 3", r"rules\[1\] has unknown key 'workers'"),
        ("[[rules]]\nmatch = 'a/**'\nocr_timeout_seconds = 'x'", r"'rules\[1\]\.ocr_timeout"),
        ("[[rules]]\nmatch = 'a/**'\non_success = 'shred'", r"'rules\[1\]\.on_success'"),
        ("[[rules]]\nmatch = 'a/**'\nlanguages = ['xx']", "unknown language 'xx'"),
        (
            "[[rules]]\nmatch = 'a/**'\nengine = 'tesseract'\nlanguages = ['spa']",
            r"not installed: spa .* \(in rules\[1\] \(match = 'a/\*\*'\)\)$",
        ),
        ("rules = 3", "expected an array of tables"),
    ],
)
def test_bad_rules_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`cli.main` configures structlog onto the captured stderr; undo that afterwards."""
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
def test_check_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, RULES)
    inside = tmp_path / "in" / "invoices" / "fr" / "jan.pdf"
    for target in ("invoices/fr/jan.pdf", str(inside)):
        assert cli.main(["check", "--config", str(path), "--explain", target]) == 0
        out = capsys.readouterr().out
        assert "path: invoices/fr/jan.pdf" in out
        assert "rule: rules[1] (match = 'invoices/fr/**')" in out
        assert "engine = tesseract  (rule)" in out
        assert "languages = fra, eng  (rule)" in out
        assert "ocr_timeout_seconds = 600.0  (default)" in out
    assert cli.main(["check", "--config", str(path), "--explain", "letters/a.png"]) == 0
    out = capsys.readouterr().out
    assert "rule: defaults (no rule matched)" in out and "output_mode = 0o640  (default)" in out


def test_worker_builds_engines_lazily_per_settings(tmp_path: Path) -> None:
    config = Config(engine=DOUBLE, state_dir=tmp_path)
    default = EngineSettings.of(config)
    first = worker.load_engine(config)
    engines = {default: first}
    (tmp_path / "a.png").write_bytes(b"x")
    other = EngineSettings(DOUBLE, ("fra",), False)
    done = worker._recognize(engines, config, other, 7, str(tmp_path / "a.png"))
    assert isinstance(done, worker.Done) and done.job_id == 7
    assert set(engines) == {default, other} and engines[default] is first
    built = engines[other]
    assert built.config.languages == ("fra",) and not built.config.orientation  # type: ignore[attr-defined]


def test_daemon_applies_rules_per_folder(tmp_path: Path) -> None:
    """Default: Tesseract in English, inputs moved. `fr/**`: French, inputs kept, mode 0600."""
    rule = Rule(
        "fr/**", (("languages", ("fra",)), ("on_success", "keep"), ("output_mode", 0o600)), 1
    )
    config = make_config(tmp_path, engine="tesseract", workers=1, orientation=False, rules=(rule,))
    render_page(LINES[:3], size=(1600, 400)).save(config.inbox / "en.png")
    (config.inbox / "fr").mkdir()
    render_page(FRENCH, size=(1400, 400)).save(config.inbox / "fr" / "lettre.png")

    assert run_once(config) == 0

    assert files_under(config.outbox) == ["en.txt", "fr/lettre.txt"]
    french = (config.outbox / "fr" / "lettre.txt").read_text(encoding="utf-8")
    assert "théâtre" in french and "élèves" in french, french
    assert (config.outbox / "fr" / "lettre.txt").stat().st_mode & 0o777 == 0o600
    assert files_under(config.inbox) == ["fr/lettre.png"]  # kept by the rule
    assert files_under(config.processed) == ["en.png"]
