# kubeinfer runtime for llama.cpp (xllamacpp in-process; no proxy hop).
#
# CPU (default):
#   docker build -f images/runtime-llamacpp.Dockerfile -t ghcr.io/kubeinfer/runtime-llamacpp:0.1.0 .
# CUDA 12.8 (xllamacpp's CUDA wheel index; needs glibc >= 2.35):
#   docker build -f images/runtime-llamacpp.Dockerfile \
#     --build-arg BASE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#     --build-arg XLLAMACPP_INDEX=https://xorbitsai.github.io/xllamacpp/whl/cu128 \
#     -t ghcr.io/kubeinfer/runtime-llamacpp-cuda:0.1.0 .
ARG BASE=python:3.11.11-slim-bookworm

FROM ${BASE}
ARG XLLAMACPP_VERSION=2026.10.11549
ARG XLLAMACPP_INDEX=""
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The CUDA base has no Python; the slim one has it already.
RUN if ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; fi \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN if [ -n "$XLLAMACPP_INDEX" ]; then \
      pip install "xllamacpp==${XLLAMACPP_VERSION}" --index-url "$XLLAMACPP_INDEX"; \
    else pip install "xllamacpp==${XLLAMACPP_VERSION}"; fi
COPY pyproject.toml /src/
COPY operator /src/operator
COPY runtime /src/runtime
RUN pip install "/src[llamacpp]" && rm -rf /src
USER 65532:65532
EXPOSE 8000 9090
ENTRYPOINT ["kubeinfer-runtime"]
CMD ["--config", "/etc/kubeinfer/runtime.yaml"]
