"""Plugins of the crm system (see crm.py)."""
