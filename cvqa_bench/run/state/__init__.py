"""The run folder's state: checkpoints, integrity, the lock, manifest, resume, inputs, status, adapters."""
