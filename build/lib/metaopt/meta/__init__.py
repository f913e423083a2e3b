"""Meta-training engines: pure steps of (state) with no I/O; drivers run them."""
