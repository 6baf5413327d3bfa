"""The package version, recorded in each queue's meta hash as lib_version."""

__version__ = "0.1.0"
