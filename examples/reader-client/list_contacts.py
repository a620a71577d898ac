"""An outside gRPC client of the reader: crm-sync, declared under the reader's `clients` in
topology.yaml, lists the contacts (or reads one) with its token.

    export CRM_SYNC_TOKEN=...        # the token the running system was started with
    python examples/reader-client/list_contacts.py [--reader 127.0.0.1:50093] [--id ID]

It needs grpcio and grpcio-tools only: the Python classes are generated from proto/contacts.proto
at start, as `python -m grpc_tools.protoc` would write them. Every call carries the metadata
`authorization: Bearer <token>`; without it, or with another token, or for an RPC its `call`
does not list, the reader answers PERMISSION_DENIED (or UNAUTHENTICATED).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path

import grpc
from grpc_tools import protoc

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"


def generate(proto: str, into: str):
    """contacts_pb2 and contacts_pb2_grpc, generated from proto/`proto` into `into`."""
    include = str(Path(protoc.__file__).parent / "_proto")  # the well-known types
    status = protoc.main(
        [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={into}",
            f"--grpc_python_out={into}",
            str(PROTO_DIR / proto),
        ]
    )
    if status != 0:
        raise SystemExit(f"protoc could not compile {proto}")
    sys.path.insert(0, into)
    stem = Path(proto).stem
    return importlib.import_module(f"{stem}_pb2"), importlib.import_module(f"{stem}_pb2_grpc")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reader", default="127.0.0.1:50093", help="the reader's address")
    parser.add_argument("--id", help="read this contact only")
    parser.add_argument("--count", type=int, default=10, help="how many contacts to list")
    options = parser.parse_args()
    token = os.environ.get("CRM_SYNC_TOKEN")
    if not token:
        print("set CRM_SYNC_TOKEN to crm-sync's token (topology.yaml: token)", file=sys.stderr)
        return 2
    metadata = (("authorization", f"Bearer {token}"),)
    with tempfile.TemporaryDirectory() as generated:
        contacts_pb2, contacts_pb2_grpc = generate("contacts.proto", generated)
        with grpc.insecure_channel(options.reader) as channel:  # TLS beyond this machine
            reader = contacts_pb2_grpc.ContactReaderStub(channel)
            try:
                if options.id:
                    found = reader.GetContact(
                        contacts_pb2.GetContactRequest(id=options.id), metadata=metadata, timeout=10
                    )
                    contacts = [found.contact]
                else:
                    listed = reader.ListContacts(
                        contacts_pb2.ListContactsRequest(count=options.count),
                        metadata=metadata,
                        timeout=10,
                    )
                    contacts = list(listed.contacts)
            except grpc.RpcError as exc:
                print(f"the reader refused: {exc.code().name}: {exc.details()}", file=sys.stderr)
                return 1
    for contact in contacts:
        print(f"{contact.id}\t{contact.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
