"""Example plugins for cqrs-flow topologies (see plugins/README.md)."""
