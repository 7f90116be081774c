"""Experimental architectures (registry names ``experimental.NAME``)."""
