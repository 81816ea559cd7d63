# syntax=docker/dockerfile:1
# The application image: every `forecaster` command (topics, train, promote, worker, replay) and the
# MLflow server, so the client and the server share one MLflow version.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, read from pyproject.toml itself, so a code change does not reinstall
# TensorFlow. The extras the compose stack can use: neural (TRAIN_MODEL may name a Keras family; its
# `tensorflow-cpu` pin keeps the x86-64 image CPU-only) and rocksdb (FORECASTER_STORE=rocksdb://).
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = p['optional-dependencies']; \
print('\n'.join(p['dependencies'] + extras['neural'] + extras['rocksdb']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
# The whole context (.dockerignore leaves out all but the sources); pip installs the packages that
# pyproject.toml lists, so a new package needs no change here.
COPY . ./
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 forecaster \
    && useradd --system --uid 10001 --gid forecaster --home-dir /var/lib/forecaster --create-home forecaster \
    && install -d -o forecaster -g forecaster /data /var/lib/forecaster/mlflow
# A named volume mounted on an existing folder takes its owner, so MLflow's store (a volume in
# docker-compose.yml) is writable by the non-root user.
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FORECASTER_HOME=/var/lib/forecaster \
    FORECASTER_DATA_DIR=/data \
    FORECASTER_METRICS_HOST=0.0.0.0 \
    FORECASTER_METRICS_PORT=9464
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/forecaster
EXPOSE 9464 8000
ENTRYPOINT ["forecaster"]
CMD ["--help"]
