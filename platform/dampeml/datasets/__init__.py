"""Dataset platform: YAML specs -> Ray Data pipeline -> versioned Parquet shards + manifest."""
