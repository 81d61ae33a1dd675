"""The `sneakers23` command: exit codes and messages, through its real entry point.

Most commands run in this process, through click's runner, with the environment a user would set
(a separate interpreter costs a second of imports a command, about a hundred times here). The
command as an installed program, a process of its own, is run here where the default database is
found, and by every test that starts a store (tests/serve/test_run.py) or a drop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner

from sneakers23.cli import cli
from sneakers23.domain.words import counted
from sneakers23.settings import get_settings

SNEAKERS23 = Path(sys.executable).with_name("sneakers23")


def run(database_url: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {"SNEAKERS23_DATABASE_URL": database_url, "SNEAKERS23_CLUSTER": "none"}
    get_settings.cache_clear()  # (read once per process: a new process reads the environment again)
    try:
        result = CliRunner().invoke(cli, list(args), env=env, prog_name="sneakers23")
    finally:
        get_settings.cache_clear()  # (and no test after this one finds this command's settings)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("".join(traceback.format_exception(result.exception)))  # never a traceback
    assert "Traceback" not in result.stderr  # (nor one a command printed itself)
    if ok:
        assert result.exit_code == 0, result.stderr
    return subprocess.CompletedProcess([str(SNEAKERS23), *args], result.exit_code, result.stdout, result.stderr)


def fails(database_url: str, *args: str, code: int = 1) -> str:
    """Runs a command that must fail: one line on stderr, a non-zero exit, nothing on stdout."""
    result = run(database_url, *args, ok=False)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""
    return result.stderr.strip()


def catalog(database_url: str) -> list[dict]:
    return json.loads(run(database_url, "products", "--json").stdout)


def test_upgrade_creates_the_schema_on_a_new_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert "up to date" in run(url, "db", "upgrade").stdout
    assert "up to date" in run(url, "db", "upgrade").stdout  # again: nothing to do
    assert "seeded 26 items" in run(url, "db", "seed").stdout


def test_the_default_database_is_a_sqlite_file_in_the_working_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SNEAKERS23_DATABASE_URL"}
    for args in (["db", "upgrade"], ["db", "seed"]):
        subprocess.run([str(SNEAKERS23), *args], cwd=tmp_path, env=env, check=True, capture_output=True)
    assert (tmp_path / "sneakers23.db").exists()


def test_seed_and_products(database_url):
    assert run(database_url, "db", "seed", "--random-seed", "5").stdout == "seeded 26 items\n"
    products = catalog(database_url)
    assert [p["sku"] for p in products] == ["SHU6000", "SHU6100"]
    assert set(products[0]) == {"id", "sku", "name", "brand", "color", "price_usd", "released", "sign_in_required", "drop_mode", "items"}
    assert set(products[0]["items"][0]) == {"id", "sku", "size", "available_count", "level"}
    assert products[0]["items"][0]["sku"] == "SHU6001" and products[0]["price_usd"] == 120

    table = run(database_url, "products").stdout
    assert "Product 1  SHU6000  Snks 23 Hop Man 3 (yellow/blue)  $120  coming soon" in table
    first = products[0]["items"][0]
    assert f"{first['id']:>4}  SHU6001  " in table and table.count("SHU61") == 14  # the product and its 13 sizes

    fails_with = fails(database_url, "db", "seed")
    assert "already holds products" in fails_with and "--reset" in fails_with
    assert "already seeded" in run(database_url, "db", "seed", "--if-empty").stdout
    run(database_url, "db", "seed", "--reset", "--random-seed", "5")
    assert catalog(database_url) == products  # the same random seed, the same stock


def test_release(database_url):
    run(database_url, "db", "seed")
    assert run(database_url, "release", "1").stdout == "product 1 released (version 2)\n"
    assert run(database_url, "release", "1", "2").stdout == (
        "product 1 already released (version 2)\nproduct 2 released (version 2)\n"
    )
    assert [p["released"] for p in catalog(database_url)] == [True, True]


def test_release_errors_release_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    run(url, "db", "upgrade")
    run(url, "db", "seed")
    assert "no product 9" in fails(url, "release", "1", "9")
    assert "not a valid integer" in fails(url, "release", "abc", code=2)
    assert "PRODUCT_ID" in fails(url, "release", code=2)
    assert [p["released"] for p in catalog(url)] == [False, False]


def test_sell(database_url):
    run(database_url, "db", "seed", "--random-seed", "5")
    item = next(i for i in catalog(database_url)[0]["items"] if i["available_count"] > 0)
    assert "not released" in fails(database_url, "sell", str(item["id"]))
    run(database_url, "release", "1")
    out = run(database_url, "sell", str(item["id"]), "--count", "3").stdout
    left = item["available_count"] - 3
    assert out.startswith(f"sold 3 pairs of item {item['id']} ({item['sku']}, size {item['size']}): {left} left")
    after = next(i for i in catalog(database_url)[0]["items"] if i["id"] == item["id"])
    assert after["available_count"] == left


def test_sell_until_sold_out_reports_where_it_stopped(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    run(url, "db", "upgrade")
    run(url, "db", "seed", "--random-seed", "5")
    run(url, "release", "1")
    item = next(i for i in catalog(url)[0]["items"] if 0 < i["available_count"])
    result = run(url, "sell", str(item["id"]), "--count", str(item["available_count"] + 2), ok=False)
    assert result.returncode == 1
    assert f"sold {counted(item['available_count'], 'pair')}" in result.stdout and "0 left, level out" in result.stdout
    assert "sold out" in result.stderr and f"stopped after selling {item['available_count']}" in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [(["sell", "999"], 1, "no item 999"), (["sell", "x"], 2, "not a valid integer"),
     (["sell", "1", "--count", "0"], 2, "--count"), (["nonsense"], 2, "No such command"),
     (["products", "--bogus"], 2, "No such option")],
)
def test_bad_input_is_one_clear_line(tmp_path, args, code, message):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    run(url, "db", "upgrade")
    run(url, "db", "seed")
    assert message in fails(url, *args, code=code)


@pytest.mark.parametrize(
    ("url", "message"),
    [("postgresql+psycopg://nobody@127.0.0.1:1/shop", "cannot reach the database"),
     ("postgresql+psycopg://nobody:secret@127.0.0.1:1/shop", "nobody:***@"),
     ("not a url", "malformed database URL"),
     ("mysql://x@localhost/shop", "unsupported database")],
)
def test_a_bad_database_url_is_one_clear_line(url, message):
    error = fails(url, "products")
    assert message in error and "secret" not in error


def test_a_database_without_the_schema_says_to_upgrade(tmp_path):
    assert "sneakers23 db upgrade" in fails(f"sqlite:///{tmp_path / 'empty.db'}", "products")


def test_scheduling_a_release(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    run(url, "db", "upgrade")
    run(url, "db", "seed")
    said = run(url, "release", "2", "--in", "1h").stdout
    assert "goes on sale at" in said and "sold to signed-in shoppers only" in said  # a new drop's default
    assert "cancelled" in run(url, "release", "2", "--cancel").stdout
    run(url, "sign-in", "2", "--not-required")  # the staff chose guests too: a schedule keeps it
    said = run(url, "release", "2", "--in", "1h").stdout
    assert "goes on sale at" in said and "signed-in" not in said, said
    assert "cancelled" in run(url, "release", "2", "--cancel").stdout
    assert "in the past" in fails(url, "release", "2", "--at", "2020-01-01T00:00")
    assert "is not a time" in fails(url, "release", "2", "--at", "soon", code=2)
    assert "is not a delay" in fails(url, "release", "2", "--in", "3x", code=2)
    assert "at most one of" in fails(url, "release", "2", "--in", "5m", "--cancel", code=2)
    run(url, "release", "1")
    assert "already released" in fails(url, "release", "1", "--in", "5m")
    assert [p["released"] for p in catalog(url)] == [True, False]


def test_admin_audit_and_unlock(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    run(url, "db", "upgrade")
    assert run(url, "admin", "audit").stdout == ""
    unlocked = run(url, "admin", "unlock").stdout
    assert unlocked.startswith("admin logins unlocked (") and "audit entry 1" in unlocked
    (line,) = run(url, "admin", "audit").stdout.splitlines()
    assert "@cli" in line and "unlock_logins" in line and " ok " in line
    assert "--limit" in fails(url, "admin", "audit", "--limit", "0", code=2)


@pytest.mark.parametrize(("variable", "value", "said"), [
    ("RAY_AUTH_TOKEN", "CHANGE-ME", "RAY_AUTH_TOKEN is still the example's placeholder"),
    ("SNEAKERS23_SECRET_KEY", "CHANGE-ME", "SNEAKERS23_SECRET_KEY is still the example's placeholder"),
    ("SNEAKERS23_SECRET_KEY", "sixteen-chars-ok", "SNEAKERS23_SECRET_KEY must be at least 32 bytes"),
    ("SNEAKERS23_ADMIN_PASSWORD", "CHANGE-ME", "SNEAKERS23_ADMIN_PASSWORD is still the example's placeholder"),
    ("SNEAKERS23_TRUSTED_PROXIES", "10.0.0.0/8,not-a-network", "SNEAKERS23_TRUSTED_PROXIES"),
])
def test_placeholder_and_weak_secrets_are_refused_at_start_in_one_line(tmp_path, monkeypatch, variable, value, said):
    monkeypatch.setenv(variable, value)
    for command in (("products",), ("serve", "--port", "1")):
        assert said in fails(f"sqlite:///{tmp_path / 'shop.db'}", *command)


def test_a_product_for_signed_in_shoppers_only_is_set_from_the_cli_and_audited(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    run(url, "db", "upgrade")
    run(url, "db", "seed")
    assert run(url, "sign-in", "1").stdout == "product 1: sold only to signed-in shoppers\n"
    assert run(url, "sign-in", "1", "--not-required").stdout == "product 1: sold to guests too\n"
    assert "there is no product 9" in fails(url, "sign-in", "9", code=1)
    lines = run(url, "admin", "audit").stdout.splitlines()
    assert [line.split()[3] for line in lines] == ["require_sign_in", "allow_guests", "require_sign_in"] and \
        " REFUSED " in lines[0] and "@cli" in lines[0]


def test_a_products_drop_mode_is_set_from_the_cli_before_its_release_and_audited(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    run(url, "db", "upgrade")
    run(url, "db", "seed")
    said = run(url, "drop", "mode", "2", "QUEUE").stdout
    assert said == ("product 2: a queue: a waiting room shuffled at the release, then admitted at a pace; "
                    "sold to signed-in shoppers only\n")
    assert ", a queue drop" in run(url, "products").stdout.split("Product 2")[1].splitlines()[0]
    assert "only signed-in shoppers may take part" in fails(url, "sign-in", "2", "--not-required", code=1)
    assert "'lottery' is not one of 'first-come', 'queue', 'draw'" in fails(url, "drop", "mode", "2", "lottery", code=2)
    run(url, "release", "2")
    assert "product 2 is unchanged (product 2 is already released: its drop mode stays queue)" in fails(
        url, "drop", "mode", "2", "draw", code=1)
    lines = run(url, "admin", "audit").stdout.splitlines()
    assert [line.split()[3] for line in lines[:3]] == ["set_drop_mode", "allow_guests", "set_drop_mode"]
    assert " REFUSED " in lines[0] and "@cli" in lines[0]


def test_drop_verify_checks_a_products_closed_draw_against_the_commitment_it_showed(tmp_path):
    import re

    from sqlalchemy import update

    from sneakers23.db.draws import draws_t
    from sneakers23.domain.accounts import account_shopper_id
    from sneakers23.inventory import Inventory
    from sneakers23.settings import Settings

    url = f"sqlite:///{tmp_path / 'd.db'}"
    run(url, "db", "upgrade")
    run(url, "db", "seed")
    said = run(url, "drop", "mode", "2", "draw").stdout
    shown = re.search(r"committed to the seed whose SHA-256 is ([0-9a-f]{64})\n$", said).group(1)
    assert shown in run(url, "admin", "audit").stdout.splitlines()[0]  # (in the audit, as on the page)
    assert fails(url, "drop", "verify", "2") == \
        "sneakers23: product 2 has no closed draw or shuffled queue to check: its draw closes at its release"
    inventory = Inventory(Settings(database_url=url, cluster="none"))
    try:
        item = next(p for p in inventory.complete_products() if p.id == 2).items[0].id
        for n in range(3):
            made = inventory.sign_up(f"entrant{n}@example.com", "analytical engine of 1843")
            inventory.verify_email(made.verify_token)
            inventory.enter_draw(account_shopper_id(made.account.id), 2, item)
        run(url, "release", "2")
        [report] = inventory.run_due_draws()  # (what the release clock does once a product is released)
        assert report.entries == 3
        said = run(url, "drop", "verify", "2", "--commitment", shown).stdout
        assert said.startswith("the record checks out: 3 entries in the published order, 0 removed")
        assert "not the one published before" in fails(url, "drop", "verify", "2", "--commitment", "00" * 32)
        # One entry changed in the published record: the check names what no longer holds.
        record = inventory.draw_state(2).record.as_dict()
        record["entries"][0] = "f" * 16
        with inventory.database.transaction() as unit:
            unit.connection.execute(update(draws_t).where(draws_t.c.product_id == 2).values(record=json.dumps(record)))
        assert "the entries' SHA-256 is not the public value" in fails(url, "drop", "verify", "2")
    finally:
        inventory.close()
    assert "give a PRODUCT or --record FILE" in fails(url, "drop", "verify", code=2)
    assert "has no closed draw" in fails(url, "drop", "verify", "1")


def test_staff_look_up_lock_and_unlock_a_shoppers_account_and_each_is_audited(tmp_path):
    from sneakers23.inventory import Inventory
    from sneakers23.settings import Settings

    url = f"sqlite:///{tmp_path / 'a.db'}"
    run(url, "db", "upgrade")
    inventory = Inventory(Settings(database_url=url, cluster="none"))
    made = inventory.sign_up("Grace@Example.com", "a compiler for every pair")
    inventory.close()
    shown = run(url, "account", "show", "grace@example.COM").stdout
    assert shown.startswith(f"account {made.account.id}: Grace@example.com, not verified, not locked") and \
        "1 session, 0 pairs bought" in shown
    locked = run(url, "account", "lock", str(made.account.id)).stdout
    assert locked.startswith(f"account {made.account.id} locked: its sessions ended") and "LOCKED, " in locked
    assert "0 sessions" in locked
    assert ", not locked," in run(url, "account", "unlock", "Grace@example.com").stdout
    assert fails(url, "account", "show", "nobody@example.com") == \
        "sneakers23: there is no account of 'nobody@example.com'"
    actions = [line.split()[3] for line in run(url, "admin", "audit").stdout.splitlines()]
    assert actions == ["look_up_account", "unlock_account", "lock_account", "look_up_account"]


def test_drop_verify_checks_a_published_shuffle_and_names_what_does_not_hold(tmp_path):
    from sneakers23.domain.fairness import Removed, commitment, draw

    seed = bytes(range(32))
    record = draw(seed, [f"entry-{n}" for n in range(25)], removed=[Removed("entry-3", "account locked")]).as_dict()
    published = tmp_path / "record.json"
    published.write_text(json.dumps(record))
    url = f"sqlite:///{tmp_path / 'unused.db'}"  # (a record needs no store)
    said = run(url, "drop", "verify", "--record", str(published), "--commitment", commitment(seed).upper()).stdout
    assert said.startswith("the record checks out: 24 entries in the published order, 1 removed (listed with why)")

    record["order"][0], record["order"][1] = record["order"][1], record["order"][0]
    published.write_text(json.dumps(record))
    assert fails(url, "drop", "verify", "--record", str(published)) == (
        "sneakers23: the record does not check out: the order is not the shuffle of the entries with this seed, "
        "less the removed")
    assert "not the one published before" in fails(url, "drop", "verify", "--record", str(published),
                                                   "--commitment", "00" * 32)
    published.write_text("not json")
    assert "is not a shuffle record" in fails(url, "drop", "verify", "--record", str(published))
    published.write_text("[" * 100_000 + "]" * 100_000)  # (nested past the parser's depth)
    assert "is not a shuffle record" in fails(url, "drop", "verify", "--record", str(published))
    published.write_text(json.dumps({**record, "order": "abc"}))
    assert "not a shuffle record" in fails(url, "drop", "verify", "--record", str(published))
    published.write_text(json.dumps({"seed": "00"}))
    assert "not a shuffle record: 'entries' is missing" in fails(url, "drop", "verify", "--record", str(published))
