"""What only the PostgreSQL backend has: its schema made once however many hosts open a
new database at once, its own version, connections that break and come back, the lease on
the server's clock, the key and folders of a database that is not a file."""

from __future__ import annotations

import os
import threading

import pytest

from support import a_claim

psycopg = pytest.importorskip("psycopg")


def test_the_first_opens_of_a_new_database_at_once_make_its_schema_once(pg_url):
    from taskwatcher.store.postgres import PostgresStore

    racers, errors = 6, []
    start = threading.Barrier(racers)

    def open_one():
        start.wait()
        try:
            with PostgresStore(pg_url) as store:
                store.reserve("x", (None, None, None), False, 60)
        except Exception as e:  # any failure is the test's
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with PostgresStore(pg_url) as store:
        assert len(store.tasks("x")) == racers


def test_a_newer_schema_is_refused_and_a_foreign_one_is_not_taken(pg_url):
    from taskwatcher.errors import NotADatabase, StoreError
    from taskwatcher.store.postgres import PostgresStore

    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE taskwatcher.schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer"):
        PostgresStore(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA taskwatcher CASCADE")
        conn.execute("CREATE SCHEMA taskwatcher")
        conn.execute("CREATE TABLE taskwatcher.tasks (x int)")
    with pytest.raises(NotADatabase):
        PostgresStore(pg_url)


def test_a_database_of_schema_1_is_upgraded_in_place_keeping_its_rows(pg_url):
    from taskwatcher.store.postgres import SCHEMA_VERSION, PostgresStore

    with PostgresStore(pg_url) as store:
        old = store.reserve("old", (None, None, None), False, 3600)
        done = store.claim(None, a_claim("done"))
        store.finish(done.id, done.token, termsignal="", termerror="", exitcode=0, feedback={})
    with psycopg.connect(pg_url, autocommit=True) as admin:  # back to schema 1 (its index goes with queue)
        admin.execute(
            "ALTER TABLE taskwatcher.tasks DROP COLUMN queue, DROP COLUMN slots, DROP COLUMN notbefore,"
            " DROP COLUMN attempt, DROP COLUMN spec, DROP COLUMN environ"
        )
        admin.execute("ALTER TABLE taskwatcher.history DROP COLUMN attempt, DROP COLUMN hook")
        admin.execute("UPDATE taskwatcher.schema_version SET version = 1")
    with PostgresStore(pg_url) as store:
        assert store.task(old).name == "old" and store.task(old).attempt == 1
        assert [(e.taskname, e.attempt, e.hook) for e in store.iter_history()] == [("done", 1, None)]
        queued = store.enqueue(
            "q", (None, None, None), False, queue="g", slots=1, spec="{}", environ='{"A": "1"}'
        )
        assert store.take_queued(queued, 30) and store.task_environment(queued) == '{"A": "1"}'
    with psycopg.connect(pg_url, autocommit=True) as admin:
        assert admin.execute("SELECT version FROM taskwatcher.schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]


def test_a_task_back_in_line_for_a_retry_has_no_lease_to_run_out(pg_url):
    from taskwatcher.store.postgres import PostgresStore

    with PostgresStore(pg_url) as store:
        taskid = store.enqueue("r", (None, None, None), False, queue=None, slots=None, spec="{}")
        assert store.take_queued(taskid, 30)
        row = store.claim(taskid, a_claim())
        with psycopg.connect(pg_url, autocommit=True) as admin:  # its host went quiet, then it ended
            admin.execute("UPDATE taskwatcher.tasks SET leaseuntil = now() - interval '1 hour'")
        end = dict(termsignal="", termerror="", exitcode=1, feedback={})
        assert store.finish(row.id, row.token, **end, retry_at=0.0) is not None
        assert store.lapsed_leases() == []  # waiting in line: nobody's lease to lose
        assert store.task(taskid).status == "QUEUED" and store.request_stop(taskid, "x") is None


def test_a_broken_connection_is_made_again_by_the_next_operation(pg_url):
    from taskwatcher.store.postgres import PostgresStore

    with PostgresStore(pg_url) as store, psycopg.connect(pg_url, autocommit=True) as admin:
        taskid = store.reserve("a", (None, None, None), False, 60)
        admin.execute("SELECT pg_terminate_backend(%s)", (store.conn.info.backend_pid,))
        with pytest.raises(Exception):  # noqa: B017  (the operation that finds it broken fails)
            store.task(taskid)
        assert store.task(taskid).name == "a"  # the next one connects again
        assert store.wait_for_change(0)  # and says something may have been missed meanwhile


def test_a_lease_is_on_the_servers_clock_and_one_that_ran_out_is_archived_as_host_lost(pg_url):
    from taskwatcher.store.postgres import PostgresStore

    with PostgresStore(pg_url) as store:
        row = store.claim(None, a_claim("l"))
        assert store.renew_lease(row.id, "stale", 60) is None
        assert store.renew_lease(row.id, row.token, 60).id == row.id
        assert store.lapsed_leases() == []
        with psycopg.connect(pg_url, autocommit=True) as admin:  # as if its host went quiet an hour ago
            admin.execute("UPDATE taskwatcher.tasks SET leaseuntil = now() - interval '1 hour'")
        assert [r.id for r in store.lapsed_leases()] == [row.id]
        lost = dict(termsignal="", termerror="host lost", exitcode=None, feedback={}, lapsed=True)
        assert store.finish(row.id, row.token, **lost) is not None
        assert store.finish(row.id, row.token, **lost) is None  # archived once
        (entry,) = store.iter_history()
        assert (entry.taskid, entry.termerror) == (row.id, "host lost")
        # The launcher's real end, when it gets through, replaces the guess: one row.
        hid = store.finish(row.id, row.token, termsignal="", termerror="", exitcode=0, feedback={"k": "v"})
        assert hid == entry.id
        (entry,) = store.iter_history()
        assert (entry.exitcode, entry.termerror, entry.feedback) == (0, "", '{"k": "v"}')
        assert store.finish(row.id, row.token, termsignal="", termerror="", exitcode=1, feedback={}) is None


def test_a_claim_writes_the_tasks_own_lease_and_a_lapsed_archive_spares_a_renewed_row(pg_url):
    """The launcher counts on its own lease from the claim on (before its first renewal): the
    claim writes that one, not the default's; and of an archive as lost and a renewal that
    came first, the renewal wins (the archive holds only while the lease is still run out)."""
    from taskwatcher.store.postgres import PostgresStore

    left = "SELECT EXTRACT(EPOCH FROM leaseuntil - now()) FROM taskwatcher.tasks WHERE id = %s"
    with PostgresStore(pg_url) as store, psycopg.connect(pg_url, autocommit=True) as admin:
        long, default = store.claim(None, a_claim("long", lease=600)), store.claim(None, a_claim("d"))
        assert 590 < admin.execute(left, (long.id,)).fetchone()[0] <= 600
        assert 50 < admin.execute(left, (default.id,)).fetchone()[0] <= 60
        admin.execute("UPDATE taskwatcher.tasks SET leaseuntil = now() - interval '1 s'")
        (lapsed, _) = store.lapsed_leases()
        assert store.renew_lease(lapsed.id, lapsed.token, 60) is not None  # its launcher got through
        lost = dict(termsignal="", termerror="host lost", exitcode=None, feedback={}, lapsed=True)
        assert store.finish(lapsed.id, lapsed.token, **lost) is None
        assert store.task(lapsed.id) is not None and list(store.iter_history()) == []


def announced(listener) -> list[str]:
    """The change notifications that reached ``listener`` so far (none is waited for)."""
    return [n.channel for n in listener.notifies(timeout=0)]


def test_a_lease_renewal_is_not_announced_as_a_change_and_a_real_change_is(pg_url):
    # A dashboard or a --wait listening for changes would otherwise wake, and read every
    # row, each time any launcher on any host renews.
    from taskwatcher.store.postgres import CHANNEL, PostgresStore

    with PostgresStore(pg_url) as store, psycopg.connect(pg_url, autocommit=True) as listener:
        row = store.claim(None, a_claim("quiet"))
        listener.execute(f'LISTEN "{CHANNEL}"')
        leases = []
        for _ in range(3):
            store.renew_lease(row.id, row.token, 60)
            leases += listener.execute("SELECT leaseuntil FROM taskwatcher.tasks").fetchone()
        assert leases == sorted(leases) and len(set(leases)) == 3  # renewed three times
        listener.execute("SELECT 1")  # (a round trip: what was sent before it has arrived)
        assert announced(listener) == []
        store.request_stop(row.id, "killed by request")
        listener.execute("SELECT 1")
        assert CHANNEL in announced(listener)


def test_a_database_of_schema_3_is_upgraded_to_renew_leases_quietly_and_take_long_names(pg_url):
    from taskwatcher.store.postgres import CHANNEL, SCHEMA_VERSION, PostgresStore

    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as admin:  # schema 3's function: every change announced
        admin.execute(
            "CREATE OR REPLACE FUNCTION taskwatcher.notify_change() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$"
        )
        for index, table, column in (
            ("tasks_name", "tasks", "name"),
            ("history_taskname", "history", "taskname"),
        ):
            admin.execute(f"DROP INDEX taskwatcher.{index}")  # as made before they were hash indexes
            admin.execute(f"CREATE INDEX {index} ON taskwatcher.{table}({column})")
        admin.execute("UPDATE taskwatcher.schema_version SET version = 3")
    with PostgresStore(pg_url) as store, psycopg.connect(pg_url, autocommit=True) as listener:
        kinds = (
            "SELECT indexname, indexdef LIKE '%%USING hash%%' FROM pg_indexes WHERE indexname LIKE '%%name'"
        )
        assert dict(listener.execute(kinds).fetchall()) == {"tasks_name": True, "history_taskname": True}
        long_name = "n" * 3000  # more than a B-tree entry holds
        done = store.claim(None, a_claim(long_name))
        store.finish(done.id, done.token, termsignal="", termerror="", exitcode=0, feedback={})
        assert [e.taskname for e in store.iter_history()] == [long_name]
        row = store.claim(None, a_claim("old"))
        listener.execute(f'LISTEN "{CHANNEL}"')
        store.renew_lease(row.id, row.token, 60)
        listener.execute("SELECT 1")
        assert announced(listener) == []
        (version,) = listener.execute("SELECT version FROM taskwatcher.schema_version").fetchone()
        assert version == SCHEMA_VERSION == 4


def test_the_key_has_no_password_and_the_local_folders_are_in_the_state_folder(pg_url, tmp_path, monkeypatch):
    from taskwatcher.store.postgres import PostgresStore, public_url

    assert public_url("postgresql://u:secret@db.example:5433/tw") == "postgresql://u@db.example:5433/tw"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    with PostgresStore(pg_url) as store:
        logs = store.local_folder("logs")
        assert logs.startswith(str(tmp_path / "taskwatcher" / "postgres")) and logs.endswith("-logs")
        assert os.path.basename(logs).startswith(pg_url.split("/")[3].split("?")[0] + "-")  # the db's name
        assert store.local_folder("pending") != logs and "secret" not in store.key


def test_the_database_is_chosen_by_its_url_in_the_environment_or_the_configuration_file(
    pg_url, env, tmp_path
):
    import json
    import subprocess

    from conftest import TW

    def listed(extra_env: dict[str, str]) -> dict:
        proc = subprocess.run([*TW, "control", "--list", "--json"], env={**env, **extra_env},
                              capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        return json.loads(proc.stdout)

    from taskwatcher.store.postgres import PostgresStore

    with PostgresStore(pg_url) as store:
        taskid = store.reserve("chosen", (None, None, None), False, 600)
    assert list(listed({"TASKWATCHER_DB": pg_url})) == [str(taskid)]
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\ndb = "{pg_url}"\n')
    assert list(listed({"TASKWATCHER_CONFIG": str(config)})) == [str(taskid)]
    assert listed({}) == {}  # neither: the default SQLite file (none yet)
