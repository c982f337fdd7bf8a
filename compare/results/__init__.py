"""The base of the harness: one request's raw record and its stream recorder (records.py), and the versioned
results file with its reading and atomic writing (store.py). May import only workloads and engines."""
