"""Plugins of the sensors system (see sensors.py)."""
