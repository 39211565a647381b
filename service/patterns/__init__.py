"""Pattern execution: registry, hybrid router, executors, token accounting, engine."""
