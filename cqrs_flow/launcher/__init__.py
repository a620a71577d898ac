"""Running a topology: node processes, readiness probes, the log printer and the launcher."""

from cqrs_flow.launcher.printer import Printer
from cqrs_flow.launcher.probes import Probe
from cqrs_flow.launcher.process import NodeProcess, Process
from cqrs_flow.launcher.supervisor import Launcher

__all__ = ["Launcher", "NodeProcess", "Printer", "Probe", "Process"]
