"""Training tasks of the model families whose inference lives under `citypath.models` (one file each).

A model file never imports from here; `citypath.training` finds a family's task through the registry
(`citypath.registry`).
"""
