"""Benchmarks: `ftpdet bench accuracy` (methods, ablation, tau sweep, heterogeneous pair over paired seeds),
`ftpdet bench speed` (step time over the floor, inference throughput) and `ftpdet bench report`."""
