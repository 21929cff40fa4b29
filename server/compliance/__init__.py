"""Per-state telepharmacy rules as data (a reviewed file with a source per value) and their enforcement."""
