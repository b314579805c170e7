# kubeinfer runtime for SGLang (`python -m sglang.launch_server`), CUDA: SGLang's release
# image plus the runtime.
#   docker build -f images/runtime-sglang.Dockerfile -t ghcr.io/kubeinfer/runtime-sglang-cuda:0.1.0 .
ARG BASE=lmsysorg/sglang:v0.5.23

FROM ${BASE}
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml /src/
COPY operator /src/operator
COPY runtime /src/runtime
RUN python3 -m pip install --no-deps /src && rm -rf /src
EXPOSE 8000 9090
ENTRYPOINT ["kubeinfer-runtime"]
CMD ["--config", "/etc/kubeinfer/runtime.yaml"]
