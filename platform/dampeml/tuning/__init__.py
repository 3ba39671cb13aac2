"""Ablation campaigns: Ray Tune over Ray Train runs, one MLflow parent run per campaign (`dampeml tune`)."""
