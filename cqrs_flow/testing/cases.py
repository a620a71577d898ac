"""Case files: given/when/then cases for a topology, in YAML (docs/TESTING.md).

A file is read like a topology: every problem is collected with its key path and line (the one
Problems collector, with its did-you-mean) and reported together, so that a broken case file
says where, not just what. What a case does is kept as the plain data it was written as, checked
here: the runner (runner.py) acts on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cqrs_flow.errors import CqrsFlowError
from cqrs_flow.topology.problems import KeyPath, Problems, did_you_mean, format_path
from cqrs_flow.topology.spec import Invalid, parse_duration
from cqrs_flow.topology.yamlsource import parse_yaml

__all__ = ["CHECKS", "STEPS", "Case", "CaseFile", "Check", "Step", "load_cases"]

# What a `given` or `when` step may be: its kind (the key that names it) -> the other keys it
# takes. `as` and `capture` only where a GraphQL operation is sent.
STEPS: dict[str, tuple[str, ...]] = {
    "mutation": ("variables", "as", "capture", "settle"),
    "publish": ("message", "payload", "settle"),
    "documents": (),
    "advance": (),
}
GIVEN_STEPS = ("mutation", "publish", "documents")
WHEN_STEPS = ("mutation", "publish", "advance")
# What a `then` check may be: its kind -> the other keys it takes.
CHECKS: dict[str, tuple[str, ...]] = {
    "store": ("holds", "lacks", "count", "exactly"),
    "query": ("variables", "as", "returns", "contains", "refused"),
    "answer": ("when",),
    "refused": ("when",),
    "status": ("reason", "when"),
    "change": (),
}
CASE_KEYS = ("name", "given", "when", "then")
STATES = ("QUEUED", "APPLIED", "FAILED")
OPS = ("insert", "update", "delete")


@dataclass(frozen=True)
class Step:
    """One thing done to the system: `kind` (a key of STEPS), its value and the other keys."""

    kind: str
    value: Any
    options: Mapping[str, Any]
    where: str  # "cases[0].when[1]": for messages

    @property
    def settles(self) -> bool:
        """Whether the runner waits, after it, until every command is applied."""
        return bool(self.options.get("settle", True)) and self.kind != "advance"


@dataclass(frozen=True)
class Check:
    """One thing the system must show after the `when` steps: `kind` (a key of CHECKS)."""

    kind: str
    value: Any
    options: Mapping[str, Any]
    where: str
    line: int | None


@dataclass(frozen=True)
class Case:
    name: str
    line: int | None
    given: tuple[Step, ...]
    when: tuple[Step, ...]
    then: tuple[Check, ...]


@dataclass(frozen=True)
class CaseFile:
    path: Path
    cases: tuple[Case, ...] = field(default=())


def load_cases(path: Path) -> CaseFile:
    """The cases of file `path`; TopologyError with every problem (key path, line) if it has
    any. Names of entities and topics are checked against the topology by the runner."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CqrsFlowError(f"cannot read case file {path}: {exc}") from None
    located = parse_yaml(text, str(path))
    problems = Problems(located)
    data = located.data
    cases: list[Case] = []
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        problems(("cases",), "a case file is a mapping with 'cases', a list of cases")
    else:
        for key in data:
            if key != "cases":
                problems((key,), f"unknown key{did_you_mean(key, ['cases'])}")
        names: set[str] = set()
        for index, raw in enumerate(data["cases"]):
            case = _case(raw, ("cases", index), problems)
            if case is None:
                continue
            if case.name in names:
                problems(("cases", index, "name"), f"another case is named '{case.name}'")
            names.add(case.name)
            cases.append(case)
    problems.raise_any(str(path))
    return CaseFile(Path(path), tuple(cases))


def _case(raw: Any, at: KeyPath, problems: Problems) -> Case | None:
    if not isinstance(raw, dict):
        problems(at, "a case is a mapping with name, given (optional), when and then")
        return None
    for key in raw:
        if key not in CASE_KEYS:
            problems((*at, key), f"unknown key{did_you_mean(key, CASE_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problems((*at, "name"), "each case needs a name (a string)")
    for required in ("when", "then"):
        if required not in raw:
            problems((*at, required), f"missing: every case has '{required}'")
    given = _list(raw, at, "given", problems, lambda r, p: _step(r, p, GIVEN_STEPS, problems))
    when = _list(raw, at, "when", problems, lambda r, p: _step(r, p, WHEN_STEPS, problems))
    then = _list(raw, at, "then", problems, lambda r, p: _check(r, p, problems))
    return Case(str(name), problems.line(at), tuple(given), tuple(when), tuple(then))


def _list(
    raw: dict[str, Any],
    at: KeyPath,
    key: str,
    problems: Problems,
    item: Callable[[Any, KeyPath], Any],
) -> list[Any]:
    value = raw.get(key, [])
    if isinstance(value, dict):  # one step or check, written without the list
        value = [value]
    if not isinstance(value, list):
        problems((*at, key), f"'{key}' is a list")
        return []
    made = [item(entry, (*at, key, i)) for i, entry in enumerate(value)]
    return [m for m in made if m is not None]


def _where(at: KeyPath) -> str:
    return format_path(at)


def _kind(raw: Any, at: KeyPath, kinds: tuple[str, ...], what: str, problems: Problems) -> str:
    """The one key of `raw` that names what it is, or "" (and a problem)."""
    if not isinstance(raw, dict):
        problems(at, f"a {what} is a mapping with one of: {', '.join(kinds)}")
        return ""
    named = [k for k in kinds if k in raw]
    options = {**STEPS, **CHECKS}
    if len(named) > 1 and all(other in options[named[0]] for other in named[1:]):
        named = named[:1]  # a query's `refused`: an option of the query, not a check of its own
    if len(named) != 1:
        unknown = [k for k in raw if k not in kinds]
        hint = did_you_mean(unknown[0], kinds) if unknown and not named else ""
        problems(at, f"a {what} has exactly one of: {', '.join(kinds)}{hint}")
        return ""
    return named[0]


def _options(
    raw: dict[str, Any], at: KeyPath, kind: str, allowed: tuple[str, ...], problems: Problems
) -> dict[str, Any]:
    options = {k: v for k, v in raw.items() if k != kind}
    for key in options:
        if key not in allowed:
            choices = ", ".join(allowed) or "nothing else"
            problems((*at, key), f"'{kind}' takes {choices}{did_you_mean(key, allowed)}")
    return options


def _step(raw: Any, at: KeyPath, kinds: tuple[str, ...], problems: Problems) -> Step | None:
    kind = _kind(raw, at, kinds, "step", problems)
    if not kind:
        return None
    options = _options(raw, at, kind, STEPS[kind], problems)
    value = raw[kind]
    if kind == "mutation" and not (isinstance(value, str) and value.strip()):
        problems((*at, kind), "the GraphQL text of the mutation")
    elif kind == "publish":
        if not isinstance(value, str) or not value:
            problems((*at, kind), "the topic (or the command's name) to publish on")
        if ("message" in options) == ("payload" in options):
            problems(at, "give the command as 'message' (its fields) or 'payload' (raw text)")
        if "message" in options and not isinstance(options["message"], dict):
            problems((*at, "message"), "the request's fields, as a mapping")
    elif kind == "documents":
        if not isinstance(value, dict) or not all(
            isinstance(docs, list) and all(isinstance(d, dict) for d in docs)
            for docs in value.values()
        ):
            problems((*at, kind), "entity -> a list of documents")
    elif kind == "advance":
        try:
            value = parse_duration(value)
        except Invalid as exc:
            problems((*at, kind), f"a duration: {exc}")
    for key in ("variables", "as"):
        if key in options and not isinstance(options[key], dict):
            problems((*at, key), f"'{key}' is a mapping")
    capture = options.get("capture", {})
    if not isinstance(capture, dict) or not all(isinstance(v, str) for v in capture.values()):
        problems((*at, "capture"), "name -> the path of a value in the answer (addContact.id)")
    if "settle" in options and not isinstance(options["settle"], bool):
        problems((*at, "settle"), "true or false")
    return Step(kind, value, options, _where(at))


def _check(raw: Any, at: KeyPath, problems: Problems) -> Check | None:
    kind = _kind(raw, at, tuple(CHECKS), "check", problems)
    if not kind:
        return None
    options = _options(raw, at, kind, CHECKS[kind], problems)
    value = raw[kind]
    if kind == "store":
        given = [k for k in ("holds", "lacks", "count", "exactly") if k in options]
        if not given:
            problems(at, "'store' needs holds, lacks, exactly (lists of documents) or count")
        for key in ("holds", "lacks", "exactly"):
            if key in options and not _documents(options[key]):
                problems((*at, key), "a list of documents (mappings)")
        if "count" in options and not isinstance(options["count"], int):
            problems((*at, "count"), "a number of documents")
    elif kind == "query":
        if not isinstance(value, str) or not value.strip():
            problems((*at, kind), "the GraphQL text of the query")
        if not any(k in options for k in ("returns", "contains", "refused")):
            problems(at, "'query' needs returns (exactly), contains (a part) or refused")
    elif kind == "status" and value not in STATES:
        problems((*at, kind), f"one of {', '.join(STATES)}{did_you_mean(value, STATES)}")
    elif kind == "change":
        if not isinstance(value, dict):
            problems((*at, kind), "a part of a change: entity, key, op, command, document")
        elif value.get("op") is not None and value["op"] not in OPS:
            problems((*at, kind, "op"), f"one of {', '.join(OPS)}{did_you_mean(value['op'], OPS)}")
    elif kind == "refused" and value is not None and not isinstance(value, (dict, str)):
        problems((*at, kind), "the refusal's message (a part of it), or {message, code}")
    if "when" in options and not isinstance(options["when"], int):
        problems((*at, "when"), "which when step: 0 is the first, -1 (the default) the last")
    return Check(kind, value, options, _where(at), problems.line(at))


def _documents(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(d, dict) for d in value)
