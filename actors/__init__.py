"""Ray actors (thin shells) and the Ray-free classes they wrap: service instances and agent swarms."""
