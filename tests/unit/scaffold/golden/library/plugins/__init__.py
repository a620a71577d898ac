"""Plugins of the library system (see library.py)."""
