"""Per-folder recognition rules: ordered ``[[rules]]`` tables, the first whose glob matches wins.

Owns: the `Rule` data (a glob on the path relative to the inbox plus overrides of top-level
keys), glob matching, the effective config for one path (`config_for`), and `EngineSettings`,
the small picklable part of it a worker needs to pick (or lazily build) an engine. Values are
converted by the config loader with the same converters as the top-level keys, so a rule's
``languages`` or ``on_success`` means exactly what the top-level key means.

Globs: ``*`` and ``?`` stay within one path segment, ``**`` spans any number of segments
(``invoices/fr/**`` matches everything below ``invoices/fr``; ``**/*.jpg`` any JPEG at any depth).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ocr_daemon.config import Config

RULE_KEYS = (
    "engine",
    "languages",
    "orientation",
    "ocr_timeout_seconds",
    "on_success",
    "output_mode",
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

    def apply(self, config: Config) -> Config:
        """`config` with this rule's keys set (the keys it does not set keep their values)."""
        return dataclasses.replace(config, **dict(self.overrides))


@dataclass(frozen=True)
class EngineSettings:
    """What a worker needs to choose an engine for one job; sent with the job, picklable."""

    engine: str
    languages: tuple[str, ...]
    orientation: bool

    @classmethod
    def of(cls, config: Config) -> EngineSettings:
        return cls(config.engine, config.languages, config.orientation)

    def apply(self, config: Config) -> Config:
        """`config` with these settings, for constructing the engine they describe."""
        return dataclasses.replace(
            config, engine=self.engine, languages=self.languages, orientation=self.orientation
        )


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


def matching_rule(config: Config, rel: PurePosixPath | str) -> Rule | None:
    return next((rule for rule in config.rules if rule.matches(rel)), None)


def config_for(config: Config, rel: PurePosixPath | str) -> tuple[Config, Rule | None]:
    """The effective config for inbox-relative `rel`: the first matching rule merged over the
    defaults (keys it does not set keep the top-level values), and that rule."""
    rule = matching_rule(config, rel)
    if rule is None:
        return config, None
    return rule.apply(config), rule


def effective_configs(config: Config) -> list[tuple[Config, Rule | None]]:
    """The defaults and each rule's merged config: everything the daemon may run with."""
    merged = [(rule.apply(config), rule) for rule in config.rules]
    return [(config, None), *merged]


def explain(config: Config, rel: PurePosixPath | str) -> list[str]:
    """Lines for `ocr-daemon check --explain`: the effective settings and where each came from."""
    effective, rule = config_for(config, rel)
    source = rule.describe() if rule else "defaults (no rule matched)"
    lines = [f"path: {rel}", f"rule: {source}"]
    set_by_rule = dict(rule.overrides) if rule else {}
    for key in RULE_KEYS:
        value = getattr(effective, key)
        shown = f"0o{value:o}" if key == "output_mode" else value
        if isinstance(value, tuple):
            shown = ", ".join(value)
        origin = "rule" if key in set_by_rule else "default"
        lines.append(f"  {key} = {shown}  ({origin})")
    return lines
