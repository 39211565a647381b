"""Helpers the experiment scripts share: row filters and criteria, the run's servers, driver-side sessions."""
