"""The runtime's own Prometheus metrics, served on ``server.metricsPort``.

The engine's metrics stay on the engine's port; these say what the runtime saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, start_http_server


@dataclass
class RuntimeMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.ready = Gauge(
            "kubeinfer_runtime_ready", "1 once the engine answers its health check", registry=r
        )
        self.time_to_ready = Gauge(
            "kubeinfer_runtime_time_to_ready_seconds",
            "Seconds from runtime start to the engine's first healthy answer",
            registry=r,
        )
        self.fetch_bytes = Counter(
            "kubeinfer_runtime_model_fetch_bytes",
            "Bytes of model files fetched from a hub into the cache directory",
            registry=r,
        )
        self.fetch_seconds = Gauge(
            "kubeinfer_runtime_model_fetch_seconds", "Seconds spent fetching the model", registry=r
        )
        self.diagnoses = Counter(
            "kubeinfer_runtime_diagnoses",
            "Known engine failures recognised in the engine's output",
            ["kind"],
            registry=r,
        )
        self.gpu_layers = Gauge(
            "kubeinfer_runtime_gpu_layers",
            "Layers llama.cpp offloads to the GPUs (llama.cpp's own count when it logs one; "
            "-1: every layer, or the fit's choice unlogged), by the stage that chose them",
            ["source"],
            registry=r,
        )
        self.engine = Info("kubeinfer_runtime_engine", "The engine this runtime runs", registry=r)

    def set_gpu_layers(self, source: str, layers: int) -> None:
        self.gpu_layers.clear()  # one series: a retry's stage replaces the first one's
        self.gpu_layers.labels(source).set(layers)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
