"""The audit trail: append-only, hash-chained, verifiable and exportable for an inspector."""
