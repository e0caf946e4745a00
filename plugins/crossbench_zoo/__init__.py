"""The model zoo: text item encoders, sequence user encoders, fusions, scorers, CDR baselines."""
