"""Atomic file writes for gan/: the ones in runtime/files.py (torch-free, shared with runtime/ and export/).

Kept so that `gancli.gan.io` imports keep working; new code imports gancli.runtime.files.
"""
from gancli.runtime.files import atomic_path, write_text_atomic

__all__ = ["atomic_path", "write_text_atomic"]
