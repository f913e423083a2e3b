"""Ray at the edge: actors that run the meta-training engines' pure pieces."""
