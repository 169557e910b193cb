"""Keyscope's domain core: what every stage shares."""
