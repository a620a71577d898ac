"""`cqrs-flow test`: given/when/then cases run against a topology's real nodes, in this process,
on free ports, with a virtual clock for the write delay (docs/TESTING.md).

cases.py reads and checks case files; system.py starts and stops the nodes; clock.py is the
virtual clock; runner.py runs one case; report.py prints and writes the results; session.py
runs the files of one topology."""

from cqrs_flow.testing.session import case_files, run_session

__all__ = ["case_files", "run_session"]
