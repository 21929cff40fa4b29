"""Central server: queue, verification, media, realtime and audit for telepharmacy fills."""
