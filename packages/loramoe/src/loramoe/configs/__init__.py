"""Shipped presets of `loramoe train --config NAME`."""
