"""Per-folder recognition rules: ordered ``[[rules]]`` tables, the first whose glob matches wins.

Owns: the `Rule` data (a glob on the path relative to the inbox plus overrides of top-level
keys) and glob matching; it imports nothing of ours. Merging a rule over the defaults is
`Config.for_path`; what a worker needs of it is `engines.base.EngineSettings`. Values are
converted by the config loader with the same converters as the top-level keys, so a rule's
``languages`` or ``on_success`` means exactly what the top-level key means.

Globs: ``*`` and ``?`` stay within one path segment, ``**`` spans any number of segments
(``invoices/fr/**`` matches everything below ``invoices/fr``; ``**/*.jpg`` any JPEG at any depth).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any

RULE_KEYS = (
    "engine",
    "languages",
    "orientation",
    "ocr_timeout_seconds",
    "on_success",
    "output_mode",
    "outputs",
    "pdf_format",
)


ENGINE_KEYS = frozenset({"engine", "languages", "orientation"})


@dataclass(frozen=True)
class Rule:
    """One ``[[rules]]`` table: `match` plus the overrides it sets, in file order."""

    match: str
    overrides: tuple[tuple[str, Any], ...] = ()
    number: int = 1  # 1-based position in the file, for messages and `check --explain`

    def sets_engine(self) -> bool:
        """Whether this rule chooses how to recognise (engine, languages or orientation). Only
        then does a job carry its settings; otherwise each worker (or worker host) uses its own
        configured engine."""
        return any(key in ENGINE_KEYS for key, _ in self.overrides)

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        return re.compile(glob_to_regex(self.match))

    def matches(self, rel: PurePosixPath | str) -> bool:
        return self._pattern.fullmatch(str(rel)) is not None

    def describe(self) -> str:
        return f"rules[{self.number}] (match = {self.match!r})"


def glob_to_regex(pattern: str) -> str:
    """Translate a path glob (``*``, ``?``, ``**``) to a regular expression over POSIX paths."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def parse_rules(value: Any, name: str, convert: Callable[[str, Any, str], Any]) -> tuple[Rule, ...]:
    """The ``rules`` key: a list of tables, each with ``match`` and any of `RULE_KEYS`.

    `convert(key, value, qualified_name)` is the loader's converter for top-level `key`; it
    raises `ConfigError`. Errors raised here are TypeError/ValueError with the rule named.
    """
    if not isinstance(value, list):
        raise TypeError("expected an array of tables: [[rules]]")
    rules = []
    for number, table in enumerate(value, start=1):
        where = f"{name}[{number}]"
        if not isinstance(table, Mapping):
            raise TypeError(f"{where} must be a table")
        match = table.get("match")
        if not isinstance(match, str) or not match or match.startswith("/"):
            raise ValueError(f"{where}.match must be a glob relative to the inbox, e.g. 'a/**'")
        unknown = sorted(set(table) - {"match", *RULE_KEYS})
        if unknown:
            raise ValueError(
                f"{where} has unknown key {unknown[0]!r}; rules may set {', '.join(RULE_KEYS)}"
            )
        overrides = tuple(
            (key, convert(key, table[key], f"{where}.{key}")) for key in RULE_KEYS if key in table
        )
        rules.append(Rule(match, overrides, number))
    return tuple(rules)
