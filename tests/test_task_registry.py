"""The task registry: built-in tasks, the nestbench.tasks entry points, register_task, errors."""

from importlib.metadata import EntryPoint

import pytest
from nestbench.tasks.sv import SVTask

import nestbench.task as task_mod
from nestbench.task import Task, TaskError, available_tasks, get_task, register_task
from tests import toy_tasks


def test_builtin_sv():
    assert get_task("sv") is SVTask
    assert available_tasks()["sv"] == "nestbench.tasks.sv:SVTask"


def test_entry_points_are_found(monkeypatch):
    ep = EntryPoint("toy_ep", "tests.toy_tasks:ToyCTCTask", task_mod.TASK_ENTRY_POINT_GROUP)
    monkeypatch.setattr(task_mod, "entry_points", lambda group: [ep] if group == ep.group else [])
    assert get_task("toy_ep") is toy_tasks.ToyCTCTask
    assert "toy_ep" in available_tasks()


def test_an_entry_point_that_is_not_a_task_is_an_error(monkeypatch):
    bad = EntryPoint("bad", "tests.toy_tasks:make_ctc_folder", task_mod.TASK_ENTRY_POINT_GROUP)
    missing = EntryPoint("gone", "tests.no_such_module:X", task_mod.TASK_ENTRY_POINT_GROUP)
    monkeypatch.setattr(task_mod, "entry_points", lambda group: [bad, missing])
    with pytest.raises(TaskError, match="'bad': tests.toy_tasks:make_ctc_folder is not a"):
        get_task("bad")
    with pytest.raises(TaskError, match="'gone': cannot import tests.no_such_module:X"):
        get_task("gone")


def test_register_task_and_its_precedence():
    class Mine(Task):
        name = "mine"

    try:
        register_task("mine", Mine)
        assert get_task("mine") is Mine
        register_task("sv", Mine)  # a registered class wins over the built-in of the same name
        assert get_task("sv") is Mine
        register_task("by_path", "tests.toy_tasks:ToyUtteranceTask")
        assert get_task("by_path") is toy_tasks.ToyUtteranceTask
    finally:
        for name in ("mine", "sv", "by_path"):
            task_mod.unregister_task(name)
    assert get_task("sv") is SVTask
    with pytest.raises(TaskError, match="expected a Task subclass"):
        register_task("x", dict)


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(TaskError, match=r"unknown task 'nope'; valid tasks: .*sv"):
        get_task("nope")
