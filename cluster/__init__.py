"""Bring-up of the simulation cluster: Ray connection, shared infra, topology, placement, runs."""
