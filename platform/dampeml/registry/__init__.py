"""MLflow tracking setup and the model registry: versions, aliases, gated promotion, safe loading."""
