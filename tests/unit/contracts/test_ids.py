"""Random ids: UUIDv4 text as uuid.uuid4 gives it, and no byte of the pool handed out twice,
in this process or in a forked child."""

from __future__ import annotations

import os
import uuid

from cqrs_flow.contracts import ids


def test_uuid4_is_a_canonical_random_uuid_of_version_4():
    made = [ids.uuid4() for _ in range(2 * ids.POOL // 16 + 3)]  # across pool refills
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text  # canonical: lower case, hyphens where uuid puts them
    assert len(set(made)) == len(made)


def test_random_ints_take_fresh_bytes_and_fill_their_size():
    values = [ids.random_int(8) for _ in range(2000)]
    assert len(set(values)) == len(values)
    assert all(0 <= v < 2**64 for v in values)
    assert max(values).bit_length() > 56  # all 8 bytes are random, not a shorter number


def test_a_forked_child_does_not_hand_out_its_parents_bytes():
    ids.uuid4()  # the pool holds bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the id it would make next
        os.write(write, ids.uuid4().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    assert child != ids.uuid4()  # the parent's next id: not the child's
