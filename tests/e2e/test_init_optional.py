"""`cqrs-flow init` with optional fields, end to end: scaffold with the real CLI (`--optional`),
run it with `cqrs-flow up`, add a contact without its optional fields over HTTP, and read them
back as null; a required field left out is refused by GraphQL validation."""

from __future__ import annotations

import subprocess

from system import System, cli, prepare, wait_until

FIELDS = "id name nickname age tags updated_at"


def test_an_optional_field_left_out_reads_as_null(tmp_path):
    directory = tmp_path / "crm"
    made = subprocess.run(
        [
            *cli(),
            "init",
            str(directory),
            "--entity",
            "Contact",
            "name:String",
            "nickname:String",
            "age:Int",
            "tags:[String]",
            "--optional",
            "nickname,age,tags",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert made.returncode == 0, made.stderr
    assert "Required fields" not in made.stdout  # --optional said it all: nothing is asked
    system = System(
        prepare(
            "crm.yaml",
            tmp_path / "run",
            source=directory / "topology.yaml",
            **{"nodes.writer.delay": "200ms"},
        )
    ).start()
    try:
        added = system.data('mutation { addContact(name: "Ada") { status message id command_id } }')
        answer = added["addContact"]
        assert answer["status"] == "OK" and answer["id"] and answer["command_id"], answer
        query = f'{{ contact(id: "{answer["id"]}") {{ {FIELDS} }} }}'
        stored = wait_until(lambda: system.data(query)["contact"])
        assert stored["name"] == "Ada"
        assert stored["nickname"] is None and stored["age"] is None  # not given: null, not ""/0
        assert stored["tags"] == []  # a list is never null: empty
        given = system.data(
            'mutation { addContact(name: "Bob", nickname: "", age: 0) { status id } }'
        )["addContact"]
        query = f'{{ contact(id: "{given["id"]}") {{ nickname age }} }}'
        # given, even as the type's default, it is there: presence tells "" and 0 from null
        assert wait_until(lambda: system.data(query)["contact"]) == {"nickname": "", "age": 0}
        refused = system.graphql('mutation { addContact(nickname: "x") { status id } }')
        assert refused.get("data") is None and "name" in refused["errors"][0]["message"]
    finally:
        assert system.stop() == 0, system.output()
