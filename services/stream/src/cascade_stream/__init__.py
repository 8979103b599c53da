"""Cascade real-time features: the user-event contract, producers and the Kafka stream feature worker.

Modules: :mod:`events` (contract + validation), :mod:`producer` (SDK), :mod:`simulator` (live traffic),
:mod:`features` (window state, shared by stream and batch), :mod:`worker` (the consumer process),
:mod:`offline` (the same features from the event log, for training), :mod:`broker` (local Tansu broker).
"""
