"""HTTP and websocket API, version 1: the route table, thin handlers, one error mapping."""
