"""The papers' claims that modkit is checked against, and the runner that checks them (``python -m reproductions``).

Research code beside the library, not part of the installed ``modkit`` package: it reads the checkout's
recipes/ and its own ``reproductions/recipes/``, trains every arm through :mod:`modkit.sweep` and reads the
runs back through the sweep's results API (:func:`modkit.sweep.load_results`). See docs/reproducing.md.
"""
