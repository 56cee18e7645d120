"""One stage's training: the Trainer and its hooks, batches, samples, processes."""
