"""OpenTelemetry setup. Off by default: with no endpoint and no trace file the global no-op tracer
stays in place, so instrumentation costs next to nothing.

Context crosses process boundaries as W3C ``traceparent`` gRPC metadata (see client.py and
interceptors.py).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult

def enabled() -> bool:
    """True while an SDK tracer provider is installed (by :func:`setup_tracing` or anyone else). With
    tracing off the RPC wrappers skip context extraction, injection and span objects entirely (trace
    headers are still forwarded verbatim, see ``context.trace_headers_var``)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans as JSON lines to a file (used by cross-process trace tests)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for s in spans:
            ctx = s.get_span_context()
            lines.append(json.dumps({
                "name": s.name,
                "service": s.resource.attributes.get("service.name"),
                "trace_id": format(ctx.trace_id, "032x"),
                "span_id": format(ctx.span_id, "016x"),
                "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                "start_ns": s.start_time, "end_ns": s.end_time,
                "status": s.status.status_code.name,
                "attributes": dict(s.attributes or {}),
            }))
        with self._lock, self.path.open("a") as f:
            f.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def setup_tracing(service: str, otlp_endpoint: str | None = None, trace_file: Path | None = None) -> bool:
    """Install an SDK tracer provider when an exporter is configured. Returns True if tracing is on."""
    if not otlp_endpoint and not trace_file:
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if trace_file:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(trace_file)))
    if otlp_endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as e:  # pragma: no cover - optional dependency
            raise SystemExit(
                "CASCADE_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp-proto-grpc is not installed"
            ) from e
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)))
    trace.set_tracer_provider(provider)
    return True


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
