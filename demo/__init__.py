"""The demo pharmacy network and its drawn evidence photos, shared by `make demo`, tests and benchmarks.

It lives beside the server, not in it: production code never imports it, and it is not installed.
"""
