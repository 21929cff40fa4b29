"""Fills: the life of a fill from creation at the site to a pharmacist's decision."""
