"""Compile a topology's .proto files with grpcio-tools and look up their messages and services.

protoc writes a descriptor set (no generated Python) into a cache keyed by the content of the
protos, so it runs once per change of a .proto file; every node loads the same cached set.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FileDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message

from cqrs_flow.errors import ProtoError
from cqrs_flow.topology.model import (
    CHANGES_SERVICE,
    COMMANDS_SERVICE,
    DOCUMENTS_SERVICE,
    PROJECTIONS_SERVICE,
)
from cqrs_flow.topology.problems import did_you_mean

__all__ = [
    "CHANGES_SERVICE",
    "COMMANDS_SERVICE",
    "DOCUMENTS_SERVICE",
    "PROJECTIONS_SERVICE",
    "ProtoSet",
    "cache_dir",
    "compile_protos",
]


def cache_dir() -> Path:
    """$CQRS_FLOW_CACHE, else $XDG_CACHE_HOME/cqrs-flow, else ~/.cache/cqrs-flow."""
    if os.environ.get("CQRS_FLOW_CACHE"):
        return Path(os.environ["CQRS_FLOW_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cqrs-flow"


@dataclass
class ProtoSet:
    """The compiled protos: message classes and service descriptors by full name."""

    pool: descriptor_pool.DescriptorPool
    path: Path  # the cached descriptor set
    _classes: dict[str, type[Message]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ProtoSet:
        files = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
        pool = descriptor_pool.DescriptorPool()
        for file_proto in files.file:  # --include_imports lists dependencies first
            pool.Add(file_proto)
        return cls(pool, path)

    def message_descriptor(self, name: str) -> Descriptor:
        try:
            return self.pool.FindMessageTypeByName(name)
        except KeyError:
            raise ProtoError(
                f"no message '{name}' in the protos{did_you_mean(name, self._message_names())}"
            ) from None

    def message_class(self, name: str) -> type[Message]:
        if name not in self._classes:
            self._classes[name] = message_factory.GetMessageClass(self.message_descriptor(name))
        return self._classes[name]

    def class_of(self, descriptor: Descriptor) -> type[Message]:
        return self.message_class(descriptor.full_name)

    def service(self, name: str) -> ServiceDescriptor:
        try:
            return self.pool.FindServiceByName(name)
        except KeyError:
            raise ProtoError(
                f"no service '{name}' in the protos{did_you_mean(name, self._service_names())}"
            ) from None

    def method(self, service: str, rpc: str) -> MethodDescriptor:
        found = self.service(service).methods_by_name.get(rpc)
        if found is None:
            names = self.service(service).methods_by_name
            raise ProtoError(f"service '{service}' has no RPC '{rpc}'{did_you_mean(rpc, names)}")
        return found

    def _files(self) -> list[FileDescriptor]:
        files = descriptor_pb2.FileDescriptorSet.FromString(self.path.read_bytes()).file
        return [self.pool.FindFileByName(f.name) for f in files]

    def _message_names(self) -> list[str]:
        names = []
        for file in self._files():
            stack = list(file.message_types_by_name.values())
            while stack:
                message = stack.pop()
                names.append(message.full_name)
                stack.extend(message.nested_types)
        return names

    def _service_names(self) -> list[str]:
        return [s.full_name for f in self._files() for s in f.services_by_name.values()]


# The protos of cqrs-flow itself (the document service), compiled with every topology's.
OWN_PROTOS = Path(__file__).parent / "proto"
OWN_PROTO_FILES = (
    OWN_PROTOS / "cqrs_flow" / "documents.proto",  # lists, lookups, relations
    OWN_PROTOS / "cqrs_flow" / "changes.proto",  # the change log
    OWN_PROTOS / "cqrs_flow" / "projections.proto",  # read models written by projections
    OWN_PROTOS / "cqrs_flow" / "commands.proto",  # several commands in one call of a writer
)


def compile_protos(files: list[Path], root: Path, cache: Path | None = None) -> ProtoSet:
    """Compile `files` (relative to `root`) and cqrs-flow's own protos unless the cache has them;
    return the loaded set."""
    files = [root / f for f in files]
    includes = list(dict.fromkeys(f.parent.resolve() for f in files)) + [OWN_PROTOS]
    files += OWN_PROTO_FILES
    target = (cache or cache_dir()) / "protos" / f"{_fingerprint(files, includes)}.pb"
    if not target.exists():
        _run_protoc(files, includes, target)
    return ProtoSet.load(target)


def _fingerprint(files: list[Path], includes: list[Path]) -> str:
    """Hash of everything that affects the output: inputs, importable protos and protoc."""
    import grpc_tools
    from google.protobuf import __version__ as protobuf_version

    digest = hashlib.sha256(f"{getattr(grpc_tools, '__version__', '')}|{protobuf_version}".encode())
    for f in files:
        digest.update(f"input:{f.resolve()}".encode())
    for include in includes:
        for proto in sorted(include.rglob("*.proto")):
            if any(
                part.startswith(".") or part == "site-packages"
                for part in proto.relative_to(include).parts
            ):
                continue  # a virtualenv or tool directory, not the project's protos
            digest.update(f"{proto}:".encode() + proto.read_bytes())
    return digest.hexdigest()[:32]


def _run_protoc(files: list[Path], includes: list[Path], target: Path) -> None:
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(suffix=".pb.tmp", dir=target.parent)
    os.close(fd)
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        *(f"-I{i}" for i in includes),
        f"-I{well_known}",
        "--include_imports",
        f"--descriptor_set_out={partial}",
        *(str(f.resolve()) for f in files),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            raise ProtoError(
                f"protoc could not compile {', '.join(f.name for f in files)}:\n{detail}"
            )
        os.replace(partial, target)  # atomic: nodes compiling at once never read half a file
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
