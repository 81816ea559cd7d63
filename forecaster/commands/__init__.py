"""One module per ``forecaster`` subcommand; each has ``register(subparsers)``."""
