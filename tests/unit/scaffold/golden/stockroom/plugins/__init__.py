"""Plugins of the stockroom system (see stockroom.py)."""
