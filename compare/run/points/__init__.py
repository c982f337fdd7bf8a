"""Several points of one command: sweeps and ablation sets (points, ablations), each point in its own child
(isolate), continued after a crash (resume), searched for the highest rate (search), engines started together
(together, side_by_side), and the command that runs them (sweep)."""
