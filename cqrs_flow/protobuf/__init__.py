"""Protobuf handling: compiling a topology's .proto files, message classes, dict conversion."""
