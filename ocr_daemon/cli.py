"""The command line: argv -> config -> logging -> command -> exit code.

`main(argv)` returns the exit code and is the one boundary where an `OcrDaemonError` becomes a
message on stderr plus its sysexits code; `entrypoint()` is the only `sys.exit`. Subcommands live
in `COMMANDS` (name -> help, argument set-up, handler), so adding one is a few lines. A command's
module is imported only when that command runs (`lazy`): `--help` and `status` load neither the
daemon, the watcher, nats nor any engine.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TextIO

from ocr_daemon import overrides
from ocr_daemon.config import INSTALLED_CONFIG, Config, default_config_path, load_config
from ocr_daemon.errors import ExitCode, InputError, OcrDaemonError, UsageError

PROG = "ocr-daemon"
Handler = Callable[[argparse.Namespace, Config], int]


@dataclass(frozen=True)
class Command:
    """One subcommand: `handler(args, config) -> exit code`."""

    help: str
    handler: Handler
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    stdout_is_output: bool = True  # then logs go to stderr, keeping stdout for the output
    logs: bool = True  # False: the command never logs, so structlog is not even imported


def lazy(target: str) -> Handler:
    """The handler ``"module:function"``, imported when its command runs, not before."""
    module, _, name = target.partition(":")

    def handler(args: argparse.Namespace, config: Config) -> int:
        function: Handler = getattr(importlib.import_module(module), name)
        return function(args, config)

    return handler


def run_ocr(args: argparse.Namespace, config: Config) -> int:
    """OCR each FILE in this process; text to stdout, one error line per failed file."""
    from ocr_daemon.engines.base import load_engine  # noqa: PLC0415 - only this command

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
    from ocr_daemon import checks  # noqa: PLC0415 - only this command

    if args.explain is not None:
        print("\n".join(checks.explain(config, args.explain)))
        return ExitCode.OK
    lines = []
    for line in checks.run_checks(config):
        print(line, flush=True)
        lines.append(line)
    return checks.exit_code(lines)


def run_status(args: argparse.Namespace, config: Config) -> int:
    """The live state, read from the state directory; `NOT_RUNNING` when no daemon runs."""
    from ocr_daemon.status import read_status, render  # noqa: PLC0415 - only this command

    text, running = render(read_status(config.state_dir), config.state_dir)
    print(text)
    print(f"  config: {_config_name(config)}; state directory: {config.state_dir}")
    return ExitCode.OK if running else ExitCode.NOT_RUNNING


def _config_name(config: Config) -> str:
    if config.source is not None:
        return str(config.source)
    return f"none ({INSTALLED_CONFIG} does not exist), so the built-in defaults"


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--explain", metavar="PATH", type=Path, help="show the settings a file in the inbox gets"
    )


def _ocr_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", metavar="FILE", nargs="+", type=Path, help="image or PDF")


COMMANDS: dict[str, Command] = {
    "run": Command(
        "watch the inbox and OCR every new file until stopped",
        lazy("ocr_daemon.service:run"),
        overrides.add_arguments,
        stdout_is_output=False,
    ),
    "once": Command(
        "OCR what is in the inbox now, then exit (1 if any file failed)",
        lazy("ocr_daemon.service:once"),
        overrides.add_arguments,
        stdout_is_output=False,
    ),
    "status": Command("show the running daemon's live state", run_status, logs=False),
    "ocr": Command("OCR files now and print their text", run_ocr, _ocr_arguments),
    "check": Command(
        "verify this machine and config can run the daemon", run_check, _check_arguments
    ),
    "worker": Command(
        "run OCR jobs for a coordinator over NATS JetStream (needs [cluster] url)",
        lazy("ocr_daemon.cluster.worker_host:run_worker"),
        stdout_is_output=False,
    ),
}


class _Version(argparse.Action):
    """``--version``, looking the installed version up only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        import importlib.metadata  # noqa: PLC0415 - a few ms every start otherwise

        print(f"{PROG} {importlib.metadata.version(PROG)}")
        parser.exit()


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error raised as `UsageError` (exit 64, as every usage error) rather
    than argparse's own exit 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG, description="Hot-folder OCR daemon: watches an inbox and OCRs each new scan."
    )
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        sub.add_argument(
            "--config",
            type=Path,
            metavar="PATH",
            help=f"TOML config file (default: {INSTALLED_CONFIG} if it exists, else built-in)",
        )
        command.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        command = COMMANDS[args.command]
        config = load_config(args.config if args.config is not None else default_config_path())
        if hasattr(args, "set_inbox"):
            config = overrides.apply(config, args)
        if command.logs:
            _configure_logging(config, sys.stderr if command.stdout_is_output else None)
        return command.handler(args, config)
    except OcrDaemonError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return ExitCode.CTRL_C
    except Exception:  # a bug: never exit 1, which means "files failed"
        traceback.print_exc()
        print(f"{PROG}: internal error (a bug): please report the traceback above", file=sys.stderr)
        return ExitCode.SOFTWARE


def _configure_logging(config: Config, stream: TextIO | None) -> None:
    from ocr_daemon.logs import configure_logging  # noqa: PLC0415 - structlog costs ~0.1 s

    configure_logging(config.log_format, config.log_level, stream=stream)


def entrypoint() -> None:
    sys.exit(main())
