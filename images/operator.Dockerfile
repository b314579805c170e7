# kubeinfer operator (kopf controller): `kubeinfer operator`.
#   docker build -f images/operator.Dockerfile -t ghcr.io/kubeinfer/operator:0.1.0 .
# The Helm chart runs it as user 1000 with a read-only root filesystem and passes
# `--metrics-port 9090 --liveness-port 8080 --images /etc/kubeinfer/images.yaml`.
ARG BASE=python:3.11.11-slim-bookworm

# Build stage: a wheel of the package, then a virtual environment with the operator extra.
FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml /src/
COPY operator /src/operator
COPY runtime /src/runtime
RUN pip wheel --no-deps --wheel-dir /wheels /src \
 && pip install "$(ls /wheels/kubeinfer-*.whl)[operator]"

# Final stage: the environment only (no compilers, no sources), as an unprivileged user.
FROM ${BASE}
LABEL org.opencontainers.image.title="kubeinfer-operator" \
      org.opencontainers.image.description="Kubernetes operator that deploys LLM inference engines" \
      org.opencontainers.image.source="https://github.com/kubeinfer/kubeinfer" \
      org.opencontainers.image.version="0.1.0"
RUN groupadd --gid 1000 kubeinfer \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin kubeinfer
COPY --from=build /opt/venv /opt/venv
# No bytecode writes: the chart mounts the root filesystem read-only.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 1000:1000
EXPOSE 8080 9090
ENTRYPOINT ["kubeinfer", "operator"]
