"""Generators of registration packs (``factory pack transformers``)."""
