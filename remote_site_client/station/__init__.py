"""The technician's station: one long-running process at the site that serves the technician's page.

`tp-site station` runs the outbox's sender and the live connection (what `sync` and `watch` do) and
serves a page on loopback (or, after pairing, to a tablet on the pharmacy's LAN). The page talks only
to the station; the station holds the device token and talks to the server. Every captured photo goes
through the same checks as `tp-site submit` (remote_site_client.checks), and Save means the fill is in
the outbox, fsynced, before the page says so.
"""
