"""The sans-IO core: script specs, operations as pure Call builders, validation, encoding.

Nothing here imports a Redis client, sleeps, reads a clock or logs. The sync and asyncio
clients are thin adapters that run what this package builds, so no transition logic exists
twice.
"""
