"""modkit's distribution name and version, readable without importing modkit (setup.py and the scaffold use them).

The import name and the command are ``modkit``; the distribution on the package index is ``modkit-vae``,
because the name ``modkit`` there belongs to an unrelated project.
"""
DISTRIBUTION = "modkit-vae"
VERSION = "0.1.0"
