"""Stage 01's side of the package: encoders, their runtimes, the feature store and the extraction stage.

The package itself imports nothing: the parameter-facing names are in ``names`` (torch-free); torch loads
only with ``text``, ``images`` and ``runtimes``, where encoding happens.
"""
