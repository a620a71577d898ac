"""constraints.txt pins the versions the tests ran with: every requirement of setup.cfg (the
package's, its test and mongodb extras'), each with ==, within the range setup.cfg allows."""

from __future__ import annotations

import configparser

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .helpers import ROOT


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            found[canonicalize_name(name)] = version
    return found


def requirements() -> list[Requirement]:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    lines = setup["options"]["install_requires"].splitlines()
    for extra in ("test", "mongodb"):
        lines += setup["options.extras_require"][extra].splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def test_every_requirement_is_pinned_within_its_range():
    pinned = pins()
    assert "cqrs-flow" not in pinned
    for requirement in requirements():
        version = pinned.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not in constraints.txt"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"constraints.txt pins {requirement.name}=={version}, outside {requirement}"
        )
