# kubeinfer runtime for llama.cpp (xllamacpp in-process; no proxy hop).
#
# CPU (default):
#   docker build -f images/runtime-llamacpp.Dockerfile -t ghcr.io/kubeinfer/runtime-llamacpp:0.1.0 .
# CUDA 12.8 (xllamacpp's CUDA wheel index; needs glibc >= 2.35):
#   docker build -f images/runtime-llamacpp.Dockerfile \
#     --build-arg BASE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#     --build-arg XLLAMACPP_INDEX=https://xorbitsai.github.io/xllamacpp/whl/cu128 \
#     -t ghcr.io/kubeinfer/runtime-llamacpp-cuda:0.1.0 .
# ROCm (AMD GPUs): xllamacpp compiled from its PyPI sdist with HIP (XLLAMACPP_BUILD_HIP=1,
# AMDGPU_TARGETS, per xllamacpp's scripts/build.py), on AMD's ROCm dev image (the base
# llama.cpp's own .devops/rocm.Dockerfile uses). Not the prebuilt ROCm wheels
# (xorbitsai.github.io/xllamacpp/whl/rocm-6.4.1 and rocm-7.2.4): per xllamacpp's README
# they cover RDNA2/3/3.5/4 and gfx950 (MI350X) but not gfx942 (MI300X). The build needs
# cmake, Python headers and a Rust toolchain (LLGuidance); it was not run here (no image
# registry, no AMD GPU):
#   docker build -f images/runtime-llamacpp.Dockerfile \
#     --build-arg BASE=rocm/dev-ubuntu-24.04:6.4-complete --build-arg XLLAMACPP_HIP=1 \
#     --build-arg AMDGPU_TARGETS="gfx90a;gfx942;gfx1100" \
#     -t ghcr.io/kubeinfer/runtime-llamacpp-rocm:0.1.0 .
ARG BASE=python:3.11.11-slim-bookworm

FROM ${BASE}
ARG XLLAMACPP_VERSION=2026.10.11549
ARG XLLAMACPP_INDEX=""
ARG XLLAMACPP_HIP=""
ARG AMDGPU_TARGETS="gfx90a;gfx942;gfx1100"
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The CUDA base has no Python; the slim one has it already.
RUN if ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; fi \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN if [ -n "$XLLAMACPP_HIP" ]; then \
      apt-get update && apt-get install -y --no-install-recommends cmake git python3-dev curl \
      && rm -rf /var/lib/apt/lists/* \
      && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal \
      && . "$HOME/.cargo/env" \
      && XLLAMACPP_BUILD_HIP=1 AMDGPU_TARGETS="$AMDGPU_TARGETS" \
         pip install --no-binary xllamacpp "xllamacpp==${XLLAMACPP_VERSION}" \
      && rm -rf "$HOME/.cargo" "$HOME/.rustup"; \
    elif [ -n "$XLLAMACPP_INDEX" ]; then \
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
