"""learngene-core: the shared base of the learngene toolkit."""

__version__ = "0.1.0"
