"""The pharmacist console: a browser application served by the server as static files."""
