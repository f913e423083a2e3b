"""Ray at the edge: actors for the meta-training engines' pieces, jobs, GPU shares."""
