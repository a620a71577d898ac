"""Relay cursors: a store's position of a document in a list, made opaque and tamper-evident.

A cursor holds the entity, the order of the list it came from and the store's position, and an
HMAC of them keyed by a secret of the gateway's (derived from its node credential, so from the
system secret). A cursor that does not decode, or whose HMAC does not match, is refused as not
one this API gave; one from a list of another entity or order is refused saying which list it
belongs to. A position stays valid while documents come and go (the stores page by keyset), so
a client may page on through a changing collection. With the system secret set (topology key
`secret`, or $CQRS_FLOW_SECRET), cursors stay valid across restarts too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from cqrs_flow.nodes.gateway.refusals import Refused

__all__ = ["INVALID_CURSOR", "Cursors"]

INVALID_CURSOR = "INVALID_CURSOR"
_VERSION = 1
_MAC_BYTES = 16
_LONGEST = 4096  # characters of a cursor: positions are small


class Cursors:
    """Makes and reads the cursors of one gateway."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"cqrs-flow cursors", hashlib.sha256).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def make(self, entity: str, order: str, position: bytes) -> str:
        payload = json.dumps(
            [_VERSION, entity, order, base64.b64encode(position).decode()], separators=(",", ":")
        ).encode()
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode().rstrip("=")

    def read(self, cursor: str, argument: str, entity: str, order: str) -> bytes:
        """The position in `cursor`, given as `argument` to a list of `entity` in `order`;
        Refused (INVALID_CURSOR) if it is not one this gateway gave for such a list."""
        not_ours = Refused(
            f"argument '{argument}' is not a cursor this API gave (it was changed, or comes "
            "from another deployment): use the cursor of an edge or of pageInfo as it is",
            INVALID_CURSOR,
        )
        if len(cursor) > _LONGEST:
            raise not_ours
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise not_ours from None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise not_ours
        try:
            version, its_entity, its_order, position = json.loads(payload)
            if version != _VERSION:
                raise ValueError(version)
            decoded = base64.b64decode(position, validate=True)
        except (ValueError, TypeError, binascii.Error):
            raise not_ours from None
        if (its_entity, its_order) != (entity, order):
            raise Refused(
                f"argument '{argument}' is a cursor of a list of {its_entity} "
                f"{_ordered(its_order)}; this list is of {entity} {_ordered(order)}: page a "
                "list with its own cursors",
                INVALID_CURSOR,
            )
        return decoded


def _ordered(order: str) -> str:
    if not order:
        return "in insertion order"
    field, _, direction = order.partition(":")
    return f"ordered by {field} {direction.upper()}"
