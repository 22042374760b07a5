"""Asynchronous generation jobs: the job document, its lifecycle, and the stores chat and runner share.

::

    queued ──start──▶ running ──finish──▶ succeeded | failed
      │                  │
      ├──cancel──▶ cancelled ◀──cancel──┘
      └──past start deadline──▶ expired          running past its lease ──▶ failed (runner_lost)

One interface (:class:`~servicekit.jobs.store.JobStore`), two stores: the SQLite state
database in STATE_DIR (local, compose) and DynamoDB (AWS); built by
:func:`servicekit.state.factory.job_store`. Every transition is conditional on the state it starts from, so a
duplicate delivery, a late cancel or a dead runner can never move a job backwards.
"""
