"""Running the server: metrics, health, the command line."""
