"""Training service: Ray Train (TensorflowTrainer + MultiWorkerMirroredStrategy) over dataset splits,
checkpoints each epoch, MLflow tracking and registration."""
