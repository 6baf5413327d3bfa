"""Integrations with other frameworks, each behind its own extra (STYLE X1, X2).

Nothing in redisq's core imports these packages.
"""
