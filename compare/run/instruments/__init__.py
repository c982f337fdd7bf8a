"""What watches a cell besides the clock: engine telemetry and the profiler window (observe), the GPU sampler (gpu),
energy counters (energy), the measured window (cellwindow), NVTX ranges (nvtx_marks), nsys, the host profile
(hostprofile, servingprocs), the collector (gcquiet), the event loop's waits (loopwaits), the machine (environment)."""
