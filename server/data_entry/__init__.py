"""Data-entry verification (PV1): a pharmacist checks a prescription as entered against its source."""
