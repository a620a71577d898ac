"""Plugins of the bookshop system (see bookshop.py)."""
