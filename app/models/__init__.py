"""keyscope's learned models: the per-character time-to-type ("pattern") and error-probability ("error") models and
the WPM trajectory model ("trajectory"), and the registry of their trained versions (app/models/registry.py)."""
