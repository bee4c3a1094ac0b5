"""Native model families, one file each, and their shared base (configuration, outputs, generation, heads)."""
