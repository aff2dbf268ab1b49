"""Shipped presets: `collect-*`, `metatrain-*` and `train-*` (package data, read by `load_config`)."""
