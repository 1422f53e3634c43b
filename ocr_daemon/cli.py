"""The command line: argv -> config -> logging -> command -> exit code.

`main(argv)` returns the exit code and is the one boundary where an `OcrDaemonError` becomes a
message on stderr plus its sysexits code; `entrypoint()` is the only `sys.exit`. Subcommands live
in `COMMANDS` (name -> help, argument set-up, handler), so adding one is a few lines.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ocr_daemon import checks, service
from ocr_daemon.cluster import worker_host as cluster_worker
from ocr_daemon.config import Config, load_config
from ocr_daemon.engines.base import load_engine
from ocr_daemon.errors import ExitCode, InputError, OcrDaemonError
from ocr_daemon.logs import configure_logging

PROG = "ocr-daemon"


@dataclass(frozen=True)
class Command:
    """One subcommand: `handler(args, config) -> exit code`."""

    help: str
    handler: Callable[[argparse.Namespace, Config], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    stdout_is_output: bool = True  # then logs go to stderr, keeping stdout for the output


def run_ocr(args: argparse.Namespace, config: Config) -> int:
    """OCR each FILE in this process; text to stdout, one error line per failed file."""
    engine = load_engine(config)
    files: list[Path] = args.files
    failed = 0
    for number, path in enumerate(files):
        try:
            result = engine.recognize(path.resolve())  # a symlink named by the user is fine
        except InputError as exc:
            print(f"{PROG}: {path}: {exc.reason}: {exc.message}", file=sys.stderr)
            failed += 1
            continue
        if len(files) > 1:
            print(f"{'' if number == 0 else chr(10)}==> {path} <==")
        print(result.text, end="" if result.text.endswith("\n") else "\n", flush=True)
    return ExitCode.FILES_FAILED if failed else ExitCode.OK


def run_check(args: argparse.Namespace, config: Config) -> int:
    """Print one line per check as it completes; the code of the first failure, else 0.
    With --explain PATH, print only the effective settings for PATH and the rule behind them."""
    if args.explain is not None:
        print("\n".join(checks.explain(config, args.explain)))
        return ExitCode.OK
    lines = []
    for line in checks.run_checks(config):
        print(line, flush=True)
        lines.append(line)
    return checks.exit_code(lines)


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--explain", metavar="PATH", type=Path, help="show the settings a file in the inbox gets"
    )


def _ocr_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", metavar="FILE", nargs="+", type=Path, help="image or PDF")


COMMANDS: dict[str, Command] = {
    "run": Command(
        "watch the inbox and OCR every new file until stopped",
        service.run,
        service.add_run_arguments,
        stdout_is_output=False,
    ),
    "once": Command(
        "OCR what is in the inbox now, then exit (1 if any file failed)",
        service.once,
        service.add_run_arguments,
        stdout_is_output=False,
    ),
    "status": Command("show the running daemon's live state", service.status),
    "ocr": Command("OCR files now and print their text", run_ocr, _ocr_arguments),
    "check": Command(
        "verify this machine and config can run the daemon", run_check, _check_arguments
    ),
    "worker": Command(
        "run OCR jobs for a coordinator over NATS JetStream (needs [cluster] url)",
        cluster_worker.run_worker,
        stdout_is_output=False,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Hot-folder OCR daemon: watches an inbox and OCRs each new scan."
    )
    parser.add_argument(
        "--version", action="version", version=f"{PROG} {importlib.metadata.version(PROG)}"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        sub.add_argument("--config", type=Path, metavar="PATH", help="TOML config file")
        command.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    try:
        config = load_config(args.config)
        if hasattr(args, "set_inbox"):
            config = service.apply_overrides(config, args)
        stream = sys.stderr if command.stdout_is_output else None
        configure_logging(config.log_format, config.log_level, stream=stream)
        return command.handler(args, config)
    except OcrDaemonError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return 130


def entrypoint() -> None:
    sys.exit(main())
