"""Event files: the schema, the ROOT writer and validating reader, and the Ray Data source."""
