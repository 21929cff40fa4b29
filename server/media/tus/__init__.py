"""tus 1.0 resumable uploads: the wire protocol, the uploads' state on disk, and the aiohttp endpoint."""
