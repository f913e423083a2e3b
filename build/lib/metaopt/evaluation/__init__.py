"""Running trainings over seeds and optimizers, and reporting them (tables, CSV, plots)."""
