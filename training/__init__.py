"""Training machinery around the backbone library: the LightningModule, callbacks, checkpoint I/O, run logs."""
