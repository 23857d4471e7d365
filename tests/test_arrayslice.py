"""The mapping from an array index to a slice of tasks (`batchsweep.task.arrayslice`): the scheduler's
variable, the child's number, and which tasks each child runs."""

from __future__ import annotations

import re

import pytest

from batchsweep.task.arrayslice import Slicing, array_index, child_number


@pytest.mark.parametrize("env, index", [
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "7"}, 7),
    ({"JOB_COMPLETION_INDEX": "4"}, 4),  # Kubernetes Indexed Job
    ({"SLURM_ARRAY_TASK_ID": "5"}, 5),  # --array=0-N
    ({"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10"}, 2),  # --array=10-20
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1"}, 0),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": ""}, 3),
    ({}, 0),  # a job of size 1 on AWS Batch is not an array: it runs child 0
    ({"AWS_BATCH_JOB_ARRAY_INDEX": ""}, 0),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": " 3 "}, 3),
])
def test_the_array_index_comes_from_the_schedulers_variable(env, index):
    assert array_index(env) == index


@pytest.mark.parametrize(
    "env, named",
    [
        ({"AWS_BATCH_JOB_ARRAY_INDEX": "x"}, "AWS_BATCH_JOB_ARRAY_INDEX='x'"),
        ({"JOB_COMPLETION_INDEX": "-1"}, "JOB_COMPLETION_INDEX='-1' is negative"),
        (
            {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "5"},
            "SLURM_ARRAY_TASK_ID=2 is below SLURM_ARRAY_TASK_MIN=5",
        ),
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "one"}, "SLURM_ARRAY_TASK_MIN='one'"),
        ({"BATCHSWEEP_CHILD_OFFSET": "1.5"}, "BATCHSWEEP_CHILD_OFFSET='1.5'"),
    ],
)
def test_a_bad_index_is_an_error_that_names_the_variable(env, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        child_number(env)


def test_the_child_number_adds_the_array_jobs_offset():
    assert child_number({"BATCHSWEEP_CHILD_OFFSET": "10000", "AWS_BATCH_JOB_ARRAY_INDEX": "3"}) == 10003
    assert child_number({"BATCHSWEEP_CHILD_OFFSET": "20000"}) == 20000
    assert child_number({"BATCHSWEEP_CHILD_OFFSET": "5", "JOB_COMPLETION_INDEX": "2"}) == 7


def test_children_run_every_task_once_in_order():
    indices = [4, 9, 1, 7, 3, 8, 0]  # a resume submits what is left, in any order
    s = Slicing.of(indices, 3)
    assert s.children == 3
    assert [s.tasks_of(c) for c in range(s.children)] == [[4, 9, 1], [7, 3, 8], [0]]
    assert s.tasks_of(3) == []  # past the end: nothing to do
    assert {i: s.child_of(i) for i in indices} == {4: 0, 9: 0, 1: 0, 7: 1, 3: 1, 8: 1, 0: 2}
    assert s.child_of(5) is None
    with pytest.raises(ValueError):
        s.tasks_of(-1)


@pytest.mark.parametrize("n, k, max_size, jobs", [
    (1, 1, 10_000, [(0, 1)]),
    (25, 1, 10_000, [(0, 25)]),
    (10_001, 1, 10_000, [(0, 10_000), (10_000, 1)]),
    (7, 2, 3, [(0, 3), (3, 1)]),
    (20_000, 1, 10_000, [(0, 10_000), (10_000, 10_000)]),
])
def test_array_jobs_cover_the_children_in_arrays_of_at_most_max_size(n, k, max_size, jobs):
    s = Slicing.of(range(n), k)
    assert list(s.array_jobs(max_size)) == jobs
    # Every child of every array job, by its offset and index, runs its share and together they run all.
    ran = [i for offset, size in jobs for index in range(size)
           for i in s.tasks_of(child_number({"BATCHSWEEP_CHILD_OFFSET": str(offset),
                                             "AWS_BATCH_JOB_ARRAY_INDEX": str(index)}))]
    assert ran == list(range(n))


def test_the_record_round_trips_as_the_store_keeps_it():
    s = Slicing.of([2, 5, 6], 2)
    assert s.to_record() == {"indices": [2, 5, 6], "tasks_per_child": 2}
    assert Slicing.from_record(s.to_record()) == s
    with pytest.raises(ValueError):
        Slicing.of([1], 0)
