"""One module per ``forecaster`` subcommand; each has ``register(subparsers)``.

``forecaster --help`` imports every one of them to build its parser, so each imports what its
``run`` needs (the project's packages, Kafka clients, MLflow, TensorFlow) inside ``run``: the
imports inside functions here are for start-up, not to avoid a cycle (``make lint`` forbids those).
"""
