"""The client spread over processes (clientprocs) or hosts (rayclients), each worker sending its share (shares)."""
