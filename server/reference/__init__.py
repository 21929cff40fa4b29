"""Drug reference data: the FDA National Drug Code Directory, imported by an operator, read by
prescription intake and by the product check."""
