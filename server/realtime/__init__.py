"""Realtime: the persisted event journal, the bus that wakes readers, and the websocket hub."""
