"""Evidence from the site: scanned barcodes and photo quality, judged by the same rules on site and server."""
