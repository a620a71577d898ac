"""paths: the one rule for where files a topology names may be, and the one reader of them.

The first tests are the inputs of the security audit (finding L6): absolute paths, `..` through
`root`, a symbolic link out of the project, and a schema error quoting the file it read.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from cqrs_flow.errors import ProjectFileError, TopologyError
from cqrs_flow.topology import load_topology

from ..helpers import ROOT

SECRET = "s3cr3t-token-nobody-may-see"


def problems_at(path: Path) -> dict[str, str]:
    """key path -> message of the problems of the topology file `path` (which must not load)."""
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    return {p.path: p.message for p in caught.value.problems}


@pytest.fixture
def deep(tmp_path: Path) -> Path:
    """A directory five levels below the filesystem root or deeper, like a project's."""
    directory = tmp_path / "a" / "b" / "c" / "d" / "e"
    directory.mkdir(parents=True)
    return directory


# -- the audit's inputs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, key",
    [
        ("proto: proto/contacts.proto", "proto: {root}/proto/contacts.proto", "proto[0]"),
        (
            "schema: schema/contacts.graphql",
            "schema: {root}/schema/contacts.graphql",
            "nodes.gateway.schema",
        ),
        ("proto:", "plugin_path: {root}\nproto:", "plugin_path[0]"),
        ("    document: contacts.Contact", "    data: /tmp\n    document: contacts.Contact", None),
        ("proto:", "secret: {{file: /etc/passwd}}\nproto:", "secret.file"),
    ],
)
def test_absolute_paths_are_refused(make_project, old, new, key):
    path = make_project(yaml=[(old, new.format(root=ROOT))])
    found = problems_at(path)
    key = key or "nodes.store.data"
    assert "is an absolute path; write it relative to the topology file" in found[key], found


def test_root_may_not_lead_to_the_filesystem_root(make_project, deep):
    project = make_project().parent
    shutil.copytree(project, deep, dirs_exist_ok=True)
    ups = "../" * len(deep.parts)  # from `deep`, as far up as it goes
    topology = deep / "topology.yaml"
    text = topology.read_text().replace(
        "proto: proto/contacts.proto",
        f"root: {ups}\nproto: [proto/contacts.proto, {ups}etc/passwd]",
    )
    topology.write_text(text)
    found = problems_at(topology)
    assert "is the filesystem root" in found["root"]
    assert "leads out of the project directory" in found["proto[1]"]


def test_root_is_the_topology_directory_or_one_above_it(make_project):
    path = make_project(yaml=[("proto:", "root: ../elsewhere\nproto:")])
    (path.parent.parent / "elsewhere").mkdir()
    found = problems_at(path)
    assert found["root"].startswith("'../elsewhere' is not the topology file's directory")


def test_a_symbolic_link_out_of_the_project_is_refused(make_project, tmp_path):
    path = make_project()
    outside = tmp_path / "outside.graphql"
    outside.write_text((path.parent / "schema" / "contacts.graphql").read_text())
    (path.parent / "schema" / "link.graphql").symlink_to(outside)
    path.write_text(path.read_text().replace("schema/contacts.graphql", "schema/link.graphql"))
    found = problems_at(path)
    assert "leads out of the project directory" in found["nodes.gateway.schema"]
    assert "through a link" in found["nodes.gateway.schema"]


def test_a_symbolic_link_to_a_secret_out_of_the_project_is_refused(make_project, tmp_path):
    path = make_project(yaml=[("proto:", "secret: {file: keys/secret}\nproto:")])
    (tmp_path / "secret").write_text(SECRET)
    (path.parent / "keys").mkdir()
    (path.parent / "keys" / "secret").symlink_to(tmp_path / "secret")
    assert "through a link" in problems_at(path)["secret.file"]


def test_a_link_that_stays_inside_the_project_is_followed(make_project):
    path = make_project()
    (path.parent / "schema" / "link.graphql").symlink_to("contacts.graphql")
    path.write_text(path.read_text().replace("schema/contacts.graphql", "schema/link.graphql"))
    assert load_topology(path).nodes["gateway"].schema == Path("schema/link.graphql")


def test_a_schema_error_does_not_quote_the_file(make_project, proto_cache):
    from cqrs_flow.contracts.check import check_contracts
    from cqrs_flow.protobuf.compiler import compile_protos

    path = make_project()
    (path.parent / "schema" / "contacts.graphql").write_text(f"{SECRET} and more\n")
    topology = load_topology(path)
    problems = check_contracts(topology, compile_protos(list(topology.protos), topology.root))
    assert [p.path for p in problems] == ["nodes.gateway.schema"]
    assert problems[0].message == (
        "schema/contacts.graphql: not valid GraphQL SDL at line 1, column 1"
    )
    assert SECRET not in str(problems)


def test_an_outside_schema_is_refused_without_reading_it(make_project, tmp_path):
    (tmp_path / "passwd").write_text(f"{SECRET}:x:0:0\n")
    path = make_project(yaml=[("schema: schema/contacts.graphql", "schema: ../passwd")])
    found = problems_at(path)
    assert "leads out of the project directory" in found["nodes.gateway.schema"]
    assert SECRET not in str(found)


# -- read_project_file ---------------------------------------------------------------------------


@pytest.fixture
def topology(make_project):
    return load_topology(make_project())


def test_reads_a_file_inside_the_project(topology):
    from cqrs_flow.topology.paths import read_project_file

    text = read_project_file(topology, "schema/contacts.graphql", 1_000_000)
    assert text == (topology.root / "schema" / "contacts.graphql").read_bytes()


@pytest.mark.parametrize(
    "relative, message",
    [
        ("/etc/passwd", "'/etc/passwd' is an absolute path"),
        ("../x", "../x leads out of the project directory"),
        ("nope.pem", "file not found: nope.pem (paths are relative to the topology file)"),
        ("schema", "the file schema is not a regular file"),
    ],
)
def test_refuses_what_it_may_not_or_cannot_read(topology, relative, message):
    from cqrs_flow.topology.paths import read_project_file

    with pytest.raises(ProjectFileError, match="^" + re.escape(message)):
        read_project_file(topology, relative, 1_000_000)


def test_refuses_a_file_over_its_limit_and_says_so(topology):
    from cqrs_flow.topology.paths import read_project_file

    with pytest.raises(ProjectFileError, match=r"the PEM file proto/contacts\.proto is \d+ bytes"):
        read_project_file(topology, "proto/contacts.proto", 10, "PEM file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_is_not_read_and_does_not_hang(topology):
    from cqrs_flow.topology.paths import read_project_file

    os.mkfifo(topology.root / "pipe")
    with pytest.raises(ProjectFileError, match="is not a regular file"):
        read_project_file(topology, "pipe", 1_000)
