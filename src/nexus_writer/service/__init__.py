"""``NexusWriterService``: supervises one session-writer process per session (an
adapter, like ``cli``: it parses config, handles signals and serves status)."""
