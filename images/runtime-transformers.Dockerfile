# kubeinfer runtime for transformers (`transformers serve`, transformers[serving] 5.24).
#
# CPU (default; torch from PyTorch's CPU index, no CUDA libraries):
#   docker build -f images/runtime-transformers.Dockerfile -t ghcr.io/kubeinfer/runtime-transformers:0.1.0 .
# CUDA (torch from PyPI brings its CUDA 13 libraries):
#   docker build -f images/runtime-transformers.Dockerfile \
#     --build-arg BASE=nvidia/cuda:13.0.2-base-ubuntu24.04 --build-arg TORCH_INDEX= \
#     -t ghcr.io/kubeinfer/runtime-transformers-cuda:0.1.0 .
# ROCm (AMD GPUs; torch from PyTorch's ROCm index, https://download.pytorch.org/whl/rocm<X.Y>,
# which bundles the ROCm libraries it needs; `torch.cuda` drives the HIP devices). Use the
# rocmX.Y index that PyTorch's "Get Started" page lists for TORCH_VERSION, on AMD's ROCm base
# of the same version. Not built here (no image registry, PyTorch's index out of reach):
#   docker build -f images/runtime-transformers.Dockerfile \
#     --build-arg BASE=rocm/dev-ubuntu-24.04:6.4-complete \
#     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/rocm6.4 \
#     -t ghcr.io/kubeinfer/runtime-transformers-rocm:0.1.0 .
# CPU without PyTorch's index (PyPI only; what `make images` uses where that index is out of
# reach): PyPI's torch is the CUDA build, which runs on CPU but cannot load without its
# nvidia-* libraries; triton (torch.compile on GPUs, about 1 GB) is left out:
#   docker build -f images/runtime-transformers.Dockerfile \
#     --build-arg TORCH_INDEX= --build-arg TORCH_WITHOUT_TRITON=1 \
#     -t ghcr.io/kubeinfer/runtime-transformers:0.1.0 .
ARG BASE=python:3.11.11-slim-bookworm

FROM ${BASE}
ARG TORCH_VERSION=2.15.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_WITHOUT_TRITON=""
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/models/.hf
RUN if ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; fi \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Without triton, torch's METADATA loses its triton requirement too, or the next pip install
# would bring it back.
RUN if [ -n "$TORCH_INDEX" ]; then \
      pip install "torch==${TORCH_VERSION}" --index-url "$TORCH_INDEX"; \
    else pip install "torch==${TORCH_VERSION}"; fi \
 && if [ -n "$TORCH_WITHOUT_TRITON" ]; then \
      pip uninstall -y triton \
      && sed -i '/^Requires-Dist: triton/d' /opt/venv/lib/python3*/site-packages/torch-*.dist-info/METADATA; \
    fi
COPY pyproject.toml /src/
COPY operator /src/operator
COPY runtime /src/runtime
RUN pip install "/src[transformers]" && rm -rf /src
USER 65532:65532
EXPOSE 8000 9090
ENTRYPOINT ["kubeinfer-runtime"]
CMD ["--config", "/etc/kubeinfer/runtime.yaml"]
