"""The destination's rows: rebuilt messages kept by the export's filter, enriched, and run through
the destination's jq transform (with IoT Central's `iotc` module importable) as the export would
have run them; without a transform, a row is the exported message itself."""

from __future__ import annotations

import functools
import re
import tempfile
from pathlib import Path
from typing import Any

from shared.backfill.export_filter import ExportFilter
from shared.backfill.records import Enrichments, Message, capability_ids, exported_message, transform_input
from shared.backfill.templates import TemplateInfo

NO_ENRICHMENTS = Enrichments()
IOTC_JQ_MODULE = "def find(f): .[] | select(f);\n"


class TransformError(ValueError):
    """The destination's jq program does not compile or fails on a rebuilt message."""


@functools.cache
def _module_dir() -> str:
    path = Path(tempfile.mkdtemp(prefix="iotc-jq-")) / "iotc.jq"
    path.write_text(IOTC_JQ_MODULE)
    return str(path.parent)


@functools.cache
def compile_transform(program: str) -> Any:
    """The jq program with IoT Central's `iotc` module made importable (a search path added to its
    import directive; the module's text is the documented `find`)."""
    import jq

    text = re.sub(r'import\s+"iotc"\s+as\s+iotc\s*;', f'import "iotc" as iotc {{search: "{_module_dir()}"}};', program)
    try:
        return jq.compile(text)
    except ValueError as exc:
        raise TransformError(f"transform does not compile: {str(exc)[:300]}") from exc


_HEADER = re.compile(r'\A((?:\s*(?:import|include)\s+"[^"]*"(?:\s+as\s+\$?\w+)?(?:\s*\{[^{}]*\})?\s*;)*)(.*)\Z', re.S)


@functools.cache
def compile_batch(program: str) -> Any | None:
    """The program run over an array of messages in one call (`[.[] | [(program)]]`: each
    message's outputs, in order); its module directives stay in front. One jq call per window
    instead of one per message (the calls, not jq, cost most). None when the wrapped program does
    not compile (the caller runs message by message)."""
    import jq

    match = _HEADER.match(program)
    if not match or not match.group(2).strip():
        return None
    header = re.sub(
        r'import\s+"iotc"\s+as\s+iotc\s*;', f'import "iotc" as iotc {{search: "{_module_dir()}"}};', match.group(1)
    )
    try:
        return jq.compile(f"{header} [.[] | [({match.group(2)})]]")
    except ValueError:
        return None


def rows_for(
    messages: list[Message],
    *,
    application_id: str,
    info: TemplateInfo,
    devices: dict[str, dict[str, Any]],
    export_filter: ExportFilter,
    transform: str | None,
    enrichments: Enrichments = NO_ENRICHMENTS,
    exclude_simulated: bool = False,
) -> list[tuple[Message, dict[str, Any]]]:
    """(source message, row) for every row the destination would have received."""
    kept = [m for m in messages if export_filter.matches(m, devices.get(m.device_id))]
    if exclude_simulated:  # with a managed identity IoT Central does not export simulated devices
        kept = [m for m in kept if not (devices.get(m.device_id) or {}).get("simulated", False)]

    def enriched(m: Message) -> dict[str, Any]:
        return enrichments.values(devices.get(m.device_id) or {"id": m.device_id}, info)

    if not transform:
        return [(m, exported_message(application_id, m, enriched(m))) for m in kept]
    program = compile_transform(transform)
    out: list[tuple[Message, dict[str, Any]]] = []
    ids = capability_ids(info)
    inputs = [transform_input(application_id, m, info, devices.get(m.device_id), ids, enriched(m)) for m in kept]
    batch = compile_batch(transform) if len(inputs) > 1 else None
    if batch is not None:
        try:
            answers = batch.input_value(inputs).first()
        except ValueError:
            answers = None  # one message fails: found and named below, message by message
        if isinstance(answers, list) and len(answers) == len(kept):
            for message, results in zip(kept, answers, strict=True):
                out.extend((message, r) for r in results if isinstance(r, dict))
            return out
    for message, value in zip(kept, inputs, strict=True):
        try:
            results = program.input_value(value).all()
        except ValueError as exc:
            raise TransformError(f"transform failed on a message of {message.device_id}: {str(exc)[:300]}") from exc
        out.extend((message, r) for r in results if isinstance(r, dict))
    return out
