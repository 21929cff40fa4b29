"""The remote site's client: check photos, store fills in a local outbox, forward them over a slow link."""
