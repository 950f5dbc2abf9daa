"""Command-line adapters: parse arguments, handle signals, map errors to exit codes."""
