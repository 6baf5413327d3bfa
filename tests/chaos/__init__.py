"""The chaos suite: faults injected into real worker processes and servers.

See docs/reliability.md.
"""
