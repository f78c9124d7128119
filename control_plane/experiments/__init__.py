"""A/B experiments: definitions, deterministic assignment, the Redis store of experiments,
exposures and feedback, and reports."""
