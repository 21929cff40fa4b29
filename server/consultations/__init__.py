"""Video consultations: the record and its life (service) and the signalling relay (signalling)."""
