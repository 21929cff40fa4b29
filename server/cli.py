"""tp-server: serve, migrate, admin, audit and reference commands.

Each command imports what it needs when it runs. The media worker processes import the program's
main module again as they start (multiprocessing does); kept light, it costs them no memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import errno
import getpass
import logging
import os
import socket
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from server.config import Config

if TYPE_CHECKING:
    from server.audit.verification import TrailReport
    from server.db.engine import Database
    from server.db.migrate import SchemaNotCurrent


# A period of whole days as the instants it runs from and up to (server.inputs.day_range).
Period = tuple[dt.datetime, dt.datetime]


def _day(text: str) -> dt.date:
    """A YYYY-MM-DD argument, by the API's rule for a date (server.inputs.Date: one whose next day
    exists, as a period needs); argparse names the one that is not."""
    from server.errors import InvalidInput
    from server.inputs import Date

    try:
        return Date().parse(text, "date")
    except InvalidInput:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _config(args: argparse.Namespace) -> Config:
    return Config.from_env(
        data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
        database_url=getattr(args, "database_url", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )


def _add_db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        help="folder for the SQLite database, uploads, and media unless TP_S3_BUCKET is set"
        " (default .tp-data or TP_DATA_DIR)",
    )
    p.add_argument(
        "--database-url", help="e.g. postgresql+asyncpg://user@host/db (default: SQLite in the data dir)"
    )


class NoDatabase(Exception):
    """The SQLite database a command was to open is not there: `path`."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no database at {path}")
        self.path = path


async def _with_db(
    config: Config, work: Callable[[Database], Awaitable[Any]], *, jit: bool = False, migrate: bool = False
) -> Any:
    """Runs `work` on the database. Only `migrate` makes the database and changes its schema (and the
    server, as it starts): any other command opens one at the code's revision, and before its work
    refuses one that is not there (NoDatabase: SQLite would make an empty one, in a mistyped data
    folder as readily as in the right one), behind the code or made by a newer version
    (SchemaNotCurrent)."""
    from server.db.engine import Database
    from server.db.migrate import require_current, upgrade
    from server.operations.storage import DataPaths

    if migrate:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    elif (database := DataPaths.of(config).database) is not None and not database.exists():
        raise NoDatabase(database)
    db = Database(config.effective_database_url, jit=jit)
    try:
        await (upgrade(db) if migrate else require_current(db))
        return await work(db)
    finally:
        await db.dispose()


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.app import create_app
    from server.compliance.rules import RulesError
    from server.operations.heap import freeze_after_start
    from server.operations.logs import AccessLog
    from server.operations.storage import DataPaths

    config = _config(args)
    if why := unlistenable(config) or claim_sqlite(config):
        print(f"tp-server: {why}", file=sys.stderr)
        return 2
    for role, path, mode in DataPaths.of(config).open_to_others():
        print(
            f"tp-server: warning: the {role} folder {path} (mode {mode:04o}) lets other users in, and it"
            f" holds patients' records: chmod -R go= {path}",
            file=sys.stderr,
        )
    try:
        app = create_app(config)
    except RulesError as exc:
        print(f"tp-server: the server cannot start: {exc}", file=sys.stderr)
        return 2
    app.on_startup.append(freeze_after_start)  # after the resources, which cleanup_ctx opens first

    def listening(_: str) -> None:
        print(f"Console: http://{config.host}:{config.port}/", flush=True)

    web.run_app(app, host=config.host, port=config.port, print=listening, access_log_class=AccessLog)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    asyncio.run(_with_db(_config(args), lambda db: asyncio.sleep(0), migrate=True))
    print("schema is up to date")
    return 0


# What an admin command that writes a record takes, checked by the rules the API checks the same request
# by (its body): the request body's field for each of the command's options.
ADMIN_OPTIONS = {
    "site": {"code": "--code", "name": "--name", "state": "--state", "requires_pv1": "--without-pv1"},
    "user": {
        "username": "--username",
        "display_name": "--display-name",
        "role": "--role",
        "password": "--password",
        "site_code": "--site",
    },
    "license": {"state": "--state", "number": "--number", "expires_on": "--expires"},
    "token": {"username": "--username", "label": "--label"},
    "integration-token": {"label": "--label"},
    "reset-password": {"password": "--password"},
}


def _admin_input(args: argparse.Namespace) -> dict[str, Any]:
    """The command's options as the API would take them (server.api's bodies), before the database is
    opened: a value the API refuses (a blank license number, a name too long for its column) is refused
    here too, naming the option. Commands that only name an existing record take their options as
    they are."""
    from server.api.accounts import NEW_PASSWORD
    from server.api.records import NEW_DEVICE_TOKEN, NEW_LICENSE, NEW_SITE, NEW_USER
    from server.errors import InvalidInput
    from server.inputs import Body

    options = ADMIN_OPTIONS.get(args.what)
    if options is None:
        return {}
    body = {
        "site": NEW_SITE,
        "user": NEW_USER,
        "license": NEW_LICENSE,
        "token": NEW_DEVICE_TOKEN,
        "integration-token": Body({"label": NEW_DEVICE_TOKEN.fields["label"]}),
        "reset-password": NEW_PASSWORD,
    }[args.what]
    # Each option's value as argparse read it; then the four that the body takes otherwise.
    given = {field: getattr(args, option[2:].replace("-", "_")) for field, option in options.items()}
    if "requires_pv1" in given:
        given["requires_pv1"] = not given["requires_pv1"]  # --without-pv1
    if "display_name" in given and given["display_name"] is None:
        given["display_name"] = args.username
    if "expires_on" in given:
        given["expires_on"] = given["expires_on"].isoformat()  # a date already (_day)
    if "password" in given and given["password"] is None:
        given["password"] = _ask_password(args)
    try:
        return body.parse(given)
    except InvalidInput as exc:
        # The fields it names, its own or those of a rule across fields, as the options that gave them.
        for field, option in options.items():
            exc.message = exc.message.replace(f"'{field}'", option)
        raise


def _ask_password(args: argparse.Namespace) -> str:
    from server.errors import InvalidInput

    prompt = "New password" if args.what == "reset-password" else "Password"
    try:
        return getpass.getpass(f"{prompt} for {args.username}: ")
    except EOFError:
        # Nothing to read it from (no terminal, standard input closed or used up).
        raise InvalidInput(
            "No password was given: give --password, or run the command at a terminal."
        ) from None


def cmd_admin(args: argparse.Namespace) -> int:
    from server.directory import Directory
    from server.errors import DomainError
    from server.security.auth import Auth
    from server.security.passwords import Passwords

    config = _config(args)

    async def work(db: Database) -> None:
        passwords = Passwords(config.password_time_cost, config.password_memory_kib)
        directory = Directory(db, passwords)
        if args.what == "site":
            site = await directory.create_site(
                None, given["code"], given["name"], given["state"], requires_pv1=given["requires_pv1"]
            )
            print(f"site {site.id} {site.code} ({site.state}) created")
        elif args.what == "site-pv1":
            site = await directory.set_requires_pv1(None, args.site, args.pv1 == "on")
            print(
                f"site {site.code}: data-entry verification (PV1) {args.pv1} for prescriptions entered "
                "from now on"
            )
        elif args.what == "user":
            user = await directory.create_user(
                None,
                given["username"],
                given["display_name"],
                given["role"],
                given["password"],
                site_code=given.get("site_code"),
            )
            print(f"user {user.id} {user.username} ({user.role}) created")
        elif args.what == "license":
            lic = await directory.add_license(
                None, args.username, given["state"], given["number"], given["expires_on"]
            )
            print(f"license {lic.state} {lic.number} until {lic.expires_on} recorded")
            if lic.expires_on < dt.date.today():  # as sign-in judges a license in force
                who, where = args.username, lic.state
                print(f"note: it expired on {lic.expires_on}: it lets {who} verify nothing in {where}")
        elif args.what == "token":
            token = await Auth(db, config, passwords).issue_device_token(
                None, given["username"], given["label"]
            )
            print(token)
        elif args.what == "integration-token":
            token = await Auth(db, config, passwords).issue_integration_token(None, args.site, given["label"])
            print(token)
        elif args.what == "revoke-token":
            await Auth(db, config, passwords).revoke_device_token(None, args.token_id)
            print(f"token {args.token_id} revoked")
        else:
            await _accounts(args, db, config, directory, Auth(db, config, passwords), given)

    try:
        given = _admin_input(args)
        asyncio.run(_with_db(config, work))
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


async def _accounts(
    args: argparse.Namespace, db: Database, config: Config, directory: Any, auth: Any, given: dict[str, Any]
) -> None:
    """The account commands: tokens, deactivate, reactivate, reset-password, reset-second-factor,
    suspend-site, reactivate-site, site-policy. Each is audited as done by the host's operator."""
    if args.what == "tokens":
        for t in (await auth.tokens()).rows:
            state = f"revoked {t['revoked_at'][:19]}" if t["revoked_at"] else "active"
            who = f"{t['kind']:<11} {t['username']:<24} {t['site_code'] or '-':<10}"
            print(f"{t['id']:>5}  {who} {state:<28} {t['label']}")
    elif args.what in ("deactivate", "reactivate"):
        await directory.set_user_active(None, args.username, args.what == "reactivate")
        print(f"user {args.username} {args.what}d")
    elif args.what == "reset-password":
        await directory.reset_password(None, args.username, given["password"])
        print(f"password of {args.username} reset; their console sessions ended")
    elif args.what == "reset-second-factor":
        n = await auth.factors.reset(None, args.username)
        print(f"{n} second factor(s) of {args.username} removed, with their recovery codes")
    elif args.what in ("suspend-site", "reactivate-site"):
        site = await directory.site_by_code(args.site)
        status = "suspended" if args.what == "suspend-site" else "active"
        await directory.set_site_status(None, site.id, status)
        print(f"site {site.code} {status}")
    elif args.what == "site-policy":
        site = await directory.site_by_code(args.site)
        required = args.require_second_factor == "yes"
        await directory.set_site_status(None, site.id, None, require_second_factor=required)
        print(f"site {site.code}: second factor {'required' if required else 'not required'}")


@contextlib.contextmanager
def _report_to(out: str) -> Iterator[TextIO]:
    """Where a report is written: standard output for "-", else the file `out`, whole or not at all.
    It is written beside it under a temporary name, readable by this user only (reports name patients),
    and renamed once complete, so a full disk or a failure midway leaves no report cut short that an
    inspector would read as the whole. A file that cannot be made is refused before any work."""
    from server.errors import InvalidInput
    from server.operations.storage import STORAGE_ERRNOS

    if out == "-":
        yield sys.stdout
        return
    path = Path(out)
    partial = path.with_name(f".{path.name}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise InvalidInput(f"{out} cannot be written: {exc.strerror}.") from None
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, path)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        # The file's own failures (a full disk, say); any other, from the work, is the work's.
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            raise InvalidInput(f"{out} cannot be written: {exc.strerror}; nothing was written.") from None
        raise


def _access_report(config: Config, args: argparse.Namespace, period: Period) -> int:
    from server.api.reports import PATIENT_NAME
    from server.security.access_log import access_report, write_report_csv

    name = PATIENT_NAME.spec.parse(args.patient_name, "--patient-name")  # the API's rule for the name
    with _report_to(args.out) as out:
        rows = asyncio.run(_with_db(config, lambda db: access_report(db, name, args.dob, *period)))
        write_report_csv(rows, out)
    print(f"{len(rows)} reads of the patient's records", file=sys.stderr)
    return 0


def _controlled_log(config: Config, args: argparse.Namespace, period: Period) -> int:
    from server.compliance.controlled import controlled_log, write_log_csv
    from server.directory import Directory
    from server.security.passwords import Passwords

    async def work(db: Database) -> list[Any]:
        directory = Directory(db, Passwords(config.password_time_cost, config.password_memory_kib))
        site = await directory.site_by_code(args.site)
        return await controlled_log(db, None, site.id, *period)

    with _report_to(args.out) as out:
        rows = asyncio.run(_with_db(config, work))
        write_log_csv(rows, out)
    print(f"{len(rows)} controlled-substance fills of {args.site}", file=sys.stderr)
    return 0


def _walked(report: TrailReport) -> str:
    """The rows a walk of the chain covered, and where it began."""
    walked = report.chain
    span = "no rows" if walked.first_id is None else f"rows {walked.first_id}-{walked.last_id}"
    if report.checkpoint is None:
        return f"{span}, from the start"
    verified = report.checkpoint_verified_at
    since = f" verified {verified.isoformat(timespec='seconds')}" if verified else ""
    return f"{span}, after the checkpoint at row {report.checkpoint.id}{since}; --full walks every row"


def cmd_audit(args: argparse.Namespace) -> int:
    from server.audit import chain as audit
    from server.audit.anchors import AnchorFile
    from server.audit.verification import verify_trail
    from server.errors import DomainError
    from server.inputs import day_range

    config = _config(args)
    if args.what == "verify":
        anchors = AnchorFile(config.data_dir)
        report = asyncio.run(
            _with_db(
                config, lambda db: verify_trail(db, anchors, full=args.full, side_by_side=True), jit=True
            )
        )
        if not report.chain.ok:
            walked = report.chain
            print(
                f"audit chain BROKEN at row {walked.first_broken_id}: {walked.problem} ({_walked(report)})",
                file=sys.stderr,
            )
            return 1
        print(f"audit chain intact: {report.chain.rows} rows ({_walked(report)})")
        anchored = report.anchors
        if not anchored.ok:
            print(f"audit anchors BROKEN: {anchored.problem}", file=sys.stderr)
            return 1
        if anchored.latest is None:
            print(f"no anchors in {anchors.path}: the newest rows cannot be checked")
        else:
            print(
                f"head anchored: {anchored.anchors} anchors hold, the latest row {anchored.latest.id} "
                f"at {anchored.latest.at.isoformat(timespec='seconds')}"
            )
        return 0
    try:
        period = day_range(args.date_from, args.date_to)
        if args.what == "access":
            return _access_report(config, args, period)
        if args.what == "controlled":
            return _controlled_log(config, args, period)
        with _report_to(args.out) as out:
            n = asyncio.run(_with_db(config, lambda db: audit.export_csv(db, *period, out)))
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(f"{n} audit events exported", file=sys.stderr)
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from server.reference import store
    from server.reference.ndc_files import ReferenceFileError

    config = _config(args)
    if args.what == "status":
        summary = asyncio.run(_with_db(config, store.status))
        if summary is None:
            print("no drug reference is loaded: product checks name no products")
        else:
            print(
                f"drug reference loaded {summary['loaded_at']}: "
                f"{summary['products']} products, {summary['packages']} packages"
            )
        return 0
    product_file, package_file = Path(args.product_file), Path(args.package_file)
    try:
        report = asyncio.run(_with_db(config, lambda db: store.import_ndc(db, product_file, package_file)))
    except (OSError, ReferenceFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"drug reference replaced: {report.products} products, {report.packages} packages "
        f"(read as {report.encodings['product']} / {report.encodings['package']}; "
        f"parsed in {report.parse_seconds:.1f} s, written in {report.write_seconds:.1f} s)"
    )
    for reason, n in sorted(report.skipped.items()):
        print(f"  {reason}: {n} (e.g. {', '.join(report.examples.get(reason, []))})")
    return 0


def _shown_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{group}: {', '.join(kinds)}" for group, kinds in value.items())
    return str(value)


def cmd_rules(args: argparse.Namespace) -> int:
    from server.compliance.rules import RulesError, load_rules

    config = Config.from_env()
    try:
        book = load_rules(config.compliance_rules, config.site_rules)
    except RulesError as exc:
        print(f"tp-server: {exc}", file=sys.stderr)
        return 2
    wanted = (args.which or "").upper()
    chosen = [r for code, r in {**book.states, **book.sites}.items() if not wanted or code.upper() == wanted]
    if wanted and not chosen:
        print(f"tp-server: no rules for {args.which!r}; states: {', '.join(book.states)}", file=sys.stderr)
        return 1
    for rules in chosen:
        shown = rules.shown()
        print(f"{shown['state']}  {shown['name']}")
        print(f"  read: {shown['read']}")
        for name, rule in shown["rules"].items():
            where = rule.get("source") or f"(unknown) read: {rule.get('read')}"
            own = f" [site: {rule['site']}]" if rule.get("site") else ""
            print(f"  {name:<28} {_shown_value(rule['value'])}{own}")
            print(f"  {'':<28}   {where}")
        print()
    defaults = _shown_value(dict(book.default_photos))
    print(f"Photos where a state names none: {defaults} ({book.default_photos_why})")
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    import json

    from server.app import load_compliance, media_store
    from server.compliance import retention
    from server.compliance.rules import RulesError
    from server.db.models import utcnow

    config = _config(args)
    try:
        book = load_compliance(config).book
    except RulesError as exc:
        print(f"tp-server: {exc}", file=sys.stderr)
        return 2

    async def work(db: Database) -> retention.Report:
        store = media_store(config)
        await store.open()
        try:
            return await retention.run(
                db, store, book, now=utcnow(), journal_days=config.event_journal_days, apply=args.apply
            )
        finally:
            await store.close()

    try:
        report = asyncio.run(_with_db(config, work))
    except retention.WrongMediaStore as exc:
        print(f"tp-server: retention refused: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the media store (a bucket out of reach, a folder not writable)
        print(
            f"tp-server: retention stopped: {exc}. What it removed is recorded (retention.applied, "
            "complete: false); run it again to complete.",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(report.shown(), indent=2))
    else:
        _print_retention(report)
    return 0


def _print_retention(report: Any) -> None:
    shown = report.shown()
    if shown["skipped"]:
        print(f"retention: nothing done: {shown['skipped']}")
        return
    verb = "removed" if shown["applied"] else "due"
    print(f"retention at {shown['at']} ({'applied' if shown['applied'] else 'dry run: nothing removed'})")
    print(f"media store: {shown['media_store']}")
    print(f"{'kind':<24}{'site':<10}{'days':>6}{verb:>9}  rule, source")
    for line in shown["lines"]:
        count = line["removed"] if shown["applied"] else line["due"]
        days = "?" if line["days"] is None else str(line["days"])
        site = line["site"] or "all"
        if line["days"] is None:
            why = f"kept {line['kept_because_unknown']}: unknown {', '.join(line['unknown'])}"
        else:
            why = f"{line['rule']}, {line['source'] or 'setting'}"
            if line.get("site_rule"):
                why += f" [site: {line['site_rule']}]"
        ids = f" ids {line['ids'][0]}-{line['ids'][1]}" if line["ids"] and count else ""
        print(f"{line['kind']:<24}{site:<10}{days:>6}{count:>9}  {why}{ids}")
    for line in shown["lines"]:
        if missing := line.get("files_missing"):
            print(
                f"already missing: {missing} file{'' if missing == 1 else 's'} of {line['kind']} at "
                f"{line['site']}, not in the media store (deleted by a run stopped before it marked "
                "their media, most likely); their media are marked removed all the same"
            )
    for kept in shown["kept"]:
        print(f"kept: {kept['kind']}: {kept['why']}")
    if shown["audit_row"] is not None:
        print(f"recorded as audit row {shown['audit_row']} (retention.applied)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tp-server", description="Telepharmacy remote verification server")
    sub = ap.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    _add_db_args(serve)
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="bring the database schema up to date")
    _add_db_args(mig)
    mig.set_defaults(func=cmd_migrate)

    admin = sub.add_parser("admin", help="manage sites, users, licenses and device tokens")
    _add_db_args(admin)
    asub = admin.add_subparsers(dest="what", required=True)
    p = asub.add_parser("site", help="create a site")
    p.add_argument("--code", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--state", required=True, help="two-letter US state")
    p.add_argument(
        "--without-pv1",
        action="store_true",
        help="prescriptions need no pharmacist's data-entry verification before they are filled",
    )
    p = asub.add_parser(
        "site-pv1", help="turn a site's data-entry verification (PV1) before filling on or off"
    )
    p.add_argument("--site", required=True, help="the site's code")
    p.add_argument("pv1", choices=["on", "off"])
    p = asub.add_parser("user", help="create a user")
    p.add_argument("--username", required=True)
    p.add_argument("--display-name")
    p.add_argument("--role", required=True, choices=["technician", "pharmacist", "admin"])
    p.add_argument("--site", help="site code (technicians)")
    p.add_argument("--password", help="prompted for when omitted")
    p = asub.add_parser("license", help="add or renew a pharmacist's license")
    p.add_argument("--username", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--number", required=True)
    p.add_argument("--expires", required=True, type=_day, help="YYYY-MM-DD")
    p = asub.add_parser("token", help="issue a device token for a technician's site device (printed once)")
    p.add_argument("--username", required=True)
    p.add_argument("--label", default="site device")
    p = asub.add_parser(
        "integration-token",
        help="issue a token for a site's pharmacy system to send prescriptions (FHIR, NCPDP) (printed once)",
    )
    p.add_argument("--site", required=True, help="the site's code")
    p.add_argument("--label", default="pharmacy system")
    p = asub.add_parser("revoke-token", help="revoke a device or integration token by id (see tokens)")
    p.add_argument("--token-id", type=int, required=True)
    asub.add_parser("tokens", help="list device and integration tokens by id (never the token itself)")
    for name, what in (
        ("deactivate", "deactivate a user: sessions end, live connections close"),
        ("reactivate", "reactivate a deactivated user"),
        ("reset-second-factor", "remove a person's second factors and recovery codes"),
    ):
        asub.add_parser(name, help=what).add_argument("--username", required=True)
    p = asub.add_parser("reset-password", help="set a new password; the person's console sessions end")
    p.add_argument("--username", required=True)
    p.add_argument("--password", help="prompted for when omitted")
    for name, what in (
        ("suspend-site", "suspend a site: its devices' live connections close"),
        ("reactivate-site", "make a suspended site active again"),
    ):
        asub.add_parser(name, help=what).add_argument("--site", required=True, help="the site's code")
    p = asub.add_parser(
        "site-policy", help="require a second factor of the pharmacists deciding a site's fills"
    )
    p.add_argument("--site", required=True, help="the site's code")
    p.add_argument("--require-second-factor", required=True, choices=["yes", "no"])
    admin.set_defaults(func=cmd_admin)

    aud = sub.add_parser("audit", help="verify or export the audit trail")
    _add_db_args(aud)
    ausub = aud.add_subparsers(dest="what", required=True)
    ver = ausub.add_parser(
        "verify",
        help="prove the hash chain after the last checkpoint and the anchors; name the first broken row",
    )
    ver.add_argument(
        "--full", action="store_true", help="walk every row from the start, not from the checkpoint"
    )
    ex = ausub.add_parser("export", help="CSV of a date range for an inspector")
    ex.add_argument("--from", dest="date_from", required=True, type=_day)
    ex.add_argument("--to", dest="date_to", required=True, type=_day)
    ex.add_argument("--out", default="-", help="file name, or - for standard output")
    acc = ausub.add_parser(
        "access", help="CSV of who read a patient's records (fills, prescriptions, photos)"
    )
    acc.add_argument("--patient-name", required=True, help="as on the prescriptions")
    acc.add_argument("--dob", required=True, type=_day, help="the patient's date of birth, YYYY-MM-DD")
    acc.add_argument("--from", dest="date_from", required=True, type=_day)
    acc.add_argument("--to", dest="date_to", required=True, type=_day)
    acc.add_argument("--out", default="-", help="file name, or - for standard output")
    con = ausub.add_parser(
        "controlled", help="CSV of a site's controlled-substance fills decided in a date range"
    )
    con.add_argument("--site", required=True, help="the site's code")
    con.add_argument("--from", dest="date_from", required=True, type=_day)
    con.add_argument("--to", dest="date_to", required=True, type=_day)
    con.add_argument("--out", default="-", help="file name, or - for standard output")
    aud.set_defaults(func=cmd_audit)

    ref = sub.add_parser("reference", help="load or show the drug reference (FDA NDC Directory)")
    rsub = ref.add_subparsers(dest="what", required=True)
    imp = rsub.add_parser(
        "import-ndc",
        help="replace the drug reference with the NDC Directory's product.txt and package.txt",
    )
    imp.add_argument("product_file", metavar="PRODUCT_FILE", help="product.txt from the FDA's ndctext.zip")
    imp.add_argument("package_file", metavar="PACKAGE_FILE", help="package.txt from the same download")
    _add_db_args(imp)
    _add_db_args(rsub.add_parser("status", help="say whether a reference is loaded, when, and its counts"))
    ref.set_defaults(func=cmd_reference)

    ret = sub.add_parser("retention", help="remove media and events past their retention period")
    retsub = ret.add_subparsers(dest="what", required=True)
    rrun = retsub.add_parser(
        "run",
        help="show what is due per kind and site, with the rule that sets its period (a dry run); "
        "--apply removes it",
    )
    _add_db_args(rrun)
    rrun.add_argument("--apply", action="store_true", help="remove what is due (default: a dry run)")
    rrun.add_argument("--json", action="store_true", help="the report as JSON")
    ret.set_defaults(func=cmd_retention)

    rules = sub.add_parser("rules", help="the state telepharmacy rules in force, each with its source")
    rsub = rules.add_subparsers(dest="what", required=True)
    show = rsub.add_parser(
        "show", help="print the rules of every state, or of one (a state code, or a site code with rules)"
    )
    show.add_argument("which", metavar="STATE", nargs="?", help="e.g. TX; all states when omitted")
    rules.set_defaults(func=cmd_rules)
    return ap


# PostgreSQL's refusals of a connection (SQLSTATE): the database named does not exist, the user or
# password was refused, too many connections, the server starting or stopping; and class 08, the
# connection itself.
_REFUSED_BY_POSTGRES = {"3D000", "28000", "28P01", "53300", "57P03"}
_CONNECT_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}
_BIND_ERRNOS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


# The descriptor of the lock a server holds on its SQLite database while it serves (claim_sqlite).
_SERVING: list[int] = []


def claim_sqlite(config: Config) -> str | None:
    """On SQLite one server serves a database: its live events go to its own consoles only, so a
    second server's pharmacists would not see the first's fills arrive. The first takes an exclusive
    lock on `<database>.serving` beside it for as long as it runs; why not, when another holds it.
    The other commands (admin, audit, migrate) are not held back. PostgreSQL serves any number."""
    import fcntl

    from server.operations.storage import DataPaths

    database = DataPaths.of(config).database
    if database is None:
        return None
    database.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(database.with_name(database.name + ".serving"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return (
            f"another server is serving {database}: on SQLite one server serves a database "
            "(several servers need PostgreSQL)"
        )
    _SERVING.append(fd)
    return None


def unlistenable(config: Config) -> str | None:
    """Why the server cannot listen where it is told to, found before anything is opened: a host name
    that names no address fails the bind only after the database and the media store are open (and
    the demo seeded), as a resolver's traceback. None when the name resolves."""
    try:
        socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot listen on {config.host}:{config.port}: {exc.strerror}"
    return None


def cannot_start(exc: BaseException, config: Config | None) -> str | None:
    """Why a command stopped before doing its work, in one line an operator can act on: a setting it
    cannot run with, the database not reached, not there or refusing the user when first asked for a
    connection, its schema not the code's, or the server's port taken; None for anything else, whose
    traceback is the report. `config`: the settings read, None when they could not be."""
    from sqlalchemy.engine import make_url

    from server.config import SettingError
    from server.db.migrate import CannotConnect, SchemaNotCurrent
    from server.errors import behind

    chain = list(behind(exc))
    setting = next((e for e in chain if isinstance(e, SettingError)), None)
    if setting is not None:
        return str(setting)
    if config is None:
        return None
    for e in chain:
        if isinstance(e, OSError) and e.errno in _BIND_ERRNOS and "bind" in str(e):
            return f"cannot listen on {config.host}:{config.port}: {os.strerror(e.errno).lower()}"
    missing = next((e for e in chain if isinstance(e, NoDatabase)), None)
    if missing is not None:
        return _no_database(missing.path, config)
    database = make_url(config.effective_database_url).render_as_string(hide_password=True)
    refused = next((e for e in chain if isinstance(e, CannotConnect)), None)
    if refused is not None:
        return f"cannot open the database {database}: {_refusal(refused.__cause__ or refused)}"
    schema = next((e for e in chain if isinstance(e, SchemaNotCurrent)), None)
    if schema is not None:
        return _not_current(database, schema)
    return None


def _no_database(path: Path, config: Config) -> str:
    """A SQLite database not there, with the setting that named it: a mistyped data folder is the
    likely cause, and TP_DATA_DIR, when set, is used whatever --data-dir says."""
    make = "or make a new database with `tp-server migrate`"
    if config.database_url:
        return f"no database at {path}: check --database-url (or TP_DATABASE_URL), {make}"
    if "TP_DATA_DIR" in os.environ:
        return (
            f"no database at {path}: TP_DATA_DIR names the data folder ({config.data_dir}), whatever"
            f" --data-dir says; correct it, {make}"
        )
    return f"no database at {path}: check --data-dir (or TP_DATA_DIR), {make}"


def _not_current(database: str, schema: SchemaNotCurrent) -> str:
    """A schema that the command will not work on: older than the code (or none), or newer."""
    if schema.newer:
        return (
            f"the database {database} was made by a newer version of tp-server (schema revision"
            f" {schema.found}; this version's is {schema.head}): run that version"
        )
    if schema.found is None:
        return f"the database {database} has no schema yet: run `tp-server migrate` first"
    return (
        f"the database {database} is at schema revision {schema.found}, behind this version's"
        f" {schema.head}: run `tp-server migrate` first"
    )


def _refusal(cause: BaseException) -> str:
    """What the driver said when the database took no connection."""
    from server.errors import behind

    for e in behind(cause):
        sqlstate = getattr(e, "sqlstate", None)
        if isinstance(sqlstate, str) and (sqlstate in _REFUSED_BY_POSTGRES or sqlstate.startswith("08")):
            return str(e)
        if isinstance(e, OSError) and e.errno in _CONNECT_ERRNOS:
            return os.strerror(e.errno).lower()
        if isinstance(e, socket.gaierror):
            return (e.strerror or str(e)).lower()
        if isinstance(e, TimeoutError):
            return "no answer in time"
        if isinstance(e, sqlite3.OperationalError) and "unable to open database file" in str(e):
            return "unable to open the file (its folder and rights?)"
    return str(cause) or type(cause).__name__


def run_or_say_why(prog: str, settings: Callable[[], Config], work: Callable[[Config], int]) -> int:
    """Reads the `settings` and runs `work` with them; when what stops either is one of
    `cannot_start`'s, says why in one line on stderr, as `prog`, and returns 2.

    What the work creates (the data folder, the SQLite database, media, uploads, exports, anchors) is
    the server's user's alone: they hold patients' records, and the server's media workers, its only
    other readers, run as the same user."""
    config = None
    umask = os.umask(0o077)
    try:
        config = settings()
        return work(config)
    except Exception as exc:
        why = cannot_start(exc, config)
        if why is None:
            raise
        print(f"{prog}: {why}", file=sys.stderr)
        return 2
    finally:
        os.umask(umask)


def main(argv: list[str] | None = None) -> int:
    from server.operations import logs

    logs.configure(logging.INFO)
    args = parser().parse_args(argv)
    return run_or_say_why("tp-server", lambda: _config(args), lambda _: int(args.func(args)))


if __name__ == "__main__":
    sys.exit(main())
