"""``cascade events produce``: send user events (JSON lines from a file or stdin) to Kafka.

Each line is one event of the v1 contract (``docs/events.md``); it is validated before anything is
sent, sent keyed by ``user_id`` with acks=all, optionally paced with ``--rate`` events/s. The command
ends once the broker acknowledged every event. A bad line stops the command (exit 2) naming the line
and field, unless ``--skip-invalid`` reports it and goes on. Kafka settings: ``--bootstrap`` or
``CASCADE_KAFKA__*`` (SASL/TLS included).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterator, TextIO

from cascade_cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, error

NAME = "events"
COMMAND = "events produce"
ACK_EVERY = 1000  # wait for acknowledgements every this many events (bounded memory)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        NAME,
        help="user events (produce to Kafka)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="events_command", required=True, metavar="SUBCOMMAND")
    prod = sub.add_parser(
        "produce",
        help="send JSON-lines events to the user-events topic",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    prod.add_argument("file", nargs="?", default="-", help="JSON-lines file ('-' = stdin)")
    prod.add_argument(
        "--rate", type=float, default=None, help="events per second (default: as fast as possible)"
    )
    prod.add_argument(
        "--bootstrap", default=None, help="Kafka bootstrap servers (env CASCADE_KAFKA__BOOTSTRAP_SERVERS)"
    )
    prod.add_argument("--topic", default=None, help="topic (env CASCADE_TOPICS__EVENTS, default user-events)")
    prod.add_argument("--skip-invalid", action="store_true", help="report invalid lines and continue")
    prod.set_defaults(func=run)


def _lines(stream: TextIO) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(stream, start=1):
        if line.strip():
            yield n, line


def run(args: argparse.Namespace) -> int:
    from cascade_stream.events import InvalidEvent, validate_event
    from cascade_stream.producer import BatchRejected, EventProducer, prepare
    from cascade_stream.settings import KafkaSettings
    from cascade_stream.simulator import Pacer
    from kafka.errors import KafkaError
    from pydantic import ValidationError

    if args.rate is not None and args.rate <= 0:
        error(COMMAND, f"--rate must be positive, got {args.rate}")
        return EXIT_USAGE
    try:
        settings = KafkaSettings()
    except ValidationError as e:
        error(COMMAND, f"invalid Kafka settings in the environment: {e}")
        return EXIT_USAGE
    kafka = (
        settings.kafka.model_copy(update={"bootstrap_servers": args.bootstrap})
        if args.bootstrap
        else settings.kafka
    )
    topic = args.topic or settings.topics.events
    try:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    except OSError as e:
        error(COMMAND, f"{args.file}: {e.strerror}")
        return EXIT_USAGE
    sent = skipped = 0
    pending: list[Any] = []
    try:
        producer = EventProducer(
            kafka, topic, settings.max_event_bytes, settings.max_lateness_s, settings.max_future_s
        )
    except (KafkaError, OSError) as e:  # NoBrokersAvailable ...
        error(COMMAND, f"Kafka {kafka.bootstrap_servers}: {e}")
        return EXIT_FAILURE
    try:
        pacer = Pacer(args.rate)
        for n, line in _lines(stream):
            try:
                doc = json.loads(line)
                ev = prepare(
                    [validate_event(doc)],
                    settings.max_event_bytes,
                    settings.max_lateness_s,
                    settings.max_future_s,
                )[0]
            except json.JSONDecodeError as e:
                reason = f"payload: invalid JSON ({e.msg} at column {e.colno})"
            except InvalidEvent as e:
                reason = e.reason
            except BatchRejected as e:
                reason = e.error.reason
            else:
                pending.append(producer.send_async(ev))
                sent += 1
                if len(pending) >= ACK_EVERY:
                    _wait(producer, pending, kafka.send_timeout_s)
                pacer.wait()
                continue
            if not args.skip_invalid:
                error(COMMAND, f"line {n}: {reason} (nothing after it was sent; {sent} sent before)")
                _wait(producer, pending, kafka.send_timeout_s)
                return EXIT_USAGE
            skipped += 1
            print(f"line {n}: skipped: {reason}", file=sys.stderr)
        _wait(producer, pending, kafka.send_timeout_s)
    except (KafkaError, OSError) as e:  # not acknowledged (KafkaTimeoutError ...)
        error(COMMAND, f"events not acknowledged by Kafka {kafka.bootstrap_servers}: {e}")
        return EXIT_FAILURE
    finally:
        producer.close()
        if stream is not sys.stdin:
            stream.close()
    print(f"sent {sent} events to {topic}" + (f" ({skipped} invalid lines skipped)" if skipped else ""))
    return EXIT_OK


def _wait(producer: Any, pending: list[Any], timeout_s: float) -> None:
    producer.flush(timeout_s)
    for f in pending:
        f.get(timeout=timeout_s)
    pending.clear()
