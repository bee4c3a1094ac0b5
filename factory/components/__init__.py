"""Preprocessing components built from a checkpoint's files: tokenizers (image processors, feature extractors
and processors join them)."""
