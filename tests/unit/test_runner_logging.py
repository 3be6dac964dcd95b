"""The operator's log: routine retries are one WARNING line, real failures stay ERROR with a traceback."""

from __future__ import annotations

import logging
import sys

import kopf
import pytest
from kubernetes.client import ApiException

from regionshift.runner import RoutineRetries, configure_logging, stop_logging


def _record(message: str, *, name: str = "kopf.objects", exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = None
    if exc is not None:
        try:
            raise exc
        except BaseException:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, exc_info)


def test_a_conflict_is_one_warning_line_without_traceback() -> None:
    record = _record("Handler 'x' failed with an exception and will try again in 60 seconds: (409)",
                     exc=ApiException(status=409, reason="Conflict"))
    assert RoutineRetries().filter(record)
    assert record.levelno == logging.WARNING and record.levelname == "WARNING"
    assert record.exc_info is None and "routine conflict" in record.getMessage()


def test_an_error_caused_by_a_conflict_is_routine_too() -> None:
    try:
        try:
            raise ApiException(status=409, reason="Conflict")
        except ApiException as conflict:
            raise kopf.TemporaryError("api-dark changed while being updated") from conflict
    except kopf.TemporaryError as exc:
        record = _record("refresh of DarkCluster ns/api failed", name="regionshift.controllers.darkcluster", exc=exc)
    RoutineRetries().filter(record)
    assert record.levelno == logging.WARNING and record.exc_info is None


def test_kopf_temporary_errors_are_warnings_but_not_when_they_give_up() -> None:
    retry = _record("Handler 'x' failed temporarily: target not found")
    RoutineRetries().filter(retry)
    assert retry.levelno == logging.WARNING
    final = _record("Handler 'x' failed temporarily but will exceed 3 retries: target not found")
    RoutineRetries().filter(final)
    assert final.levelno == logging.ERROR


def test_other_api_errors_keep_their_level_and_traceback() -> None:
    record = _record("Handler 'x' failed with an exception and will try again in 60 seconds: (403)",
                     exc=ApiException(status=403, reason="Forbidden"))
    RoutineRetries().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_a_failure_while_handling_a_conflict_is_not_routine() -> None:
    try:
        try:
            raise ApiException(status=409, reason="Conflict")
        except ApiException:
            raise KeyError("status")  # noqa: B904  (implicit context on purpose)
    except KeyError as exc:
        record = _record("reconcile failed", name="regionshift.controllers.darkcluster", exc=exc)
    RoutineRetries().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_the_background_log_writes_each_line_once_with_its_traceback_and_demotes_conflicts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(background=True)
    try:
        log = logging.getLogger("regionshift.test")
        log.info("plain %s", "line")
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError:
            log.exception("a failure")
        try:
            raise ApiException(status=409, reason="Conflict")
        except ApiException:
            log.error("a write lost a race", exc_info=True)
    finally:
        stop_logging()
        root.handlers[:], root.level = saved  # leave no queue handler behind for other tests
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" ", 2)[2] for line in lines if " regionshift.test: " in line] == [
        "INFO regionshift.test: plain line",
        "ERROR regionshift.test: a failure",
        "WARNING regionshift.test: a write lost a race (routine conflict, retried: ApiException 409 Conflict)",
    ]
    assert sum("Traceback" in line for line in lines) == 1
    assert any("ZeroDivisionError: boom" in line for line in lines)
