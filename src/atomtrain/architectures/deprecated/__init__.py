"""Deprecated architectures (registry names ``deprecated.NAME``)."""
