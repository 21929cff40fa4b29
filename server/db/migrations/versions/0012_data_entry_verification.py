"""data-entry verification (PV1): a prescription's verification state and lease, each pharmacist's
verification, each correction at the site, a site's setting, and a prescription's paper original as
media

A medium now belongs to exactly one of a fill, a consultation and a prescription. On SQLite a check
cannot change in place, and consultations refer to media, so dropping the old table (as a copy and
recreate does) would fail their foreign key: the old table is renamed aside, the new one takes its
name, rows and indexes, the references to it are put back as they were, and the old one goes. Sites
and prescriptions, which other tables refer to as well, gain their columns in place.
Prescriptions from before this revision are "not_required": they were filled without PV1 and stay so.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OLD_OWNER_CHECK = "(fill_id IS NULL) <> (consultation_id IS NULL)"
OWNER_CHECK = (
    "(CASE WHEN fill_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN consultation_id IS NULL THEN 0 ELSE 1 END)"
    " + (CASE WHEN prescription_id IS NULL THEN 0 ELSE 1 END) = 1"
)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    sqlite = _sqlite()
    op.add_column("sites", sa.Column("requires_pv1", sa.Boolean(), server_default=sa.true(), nullable=False))
    op.add_column(
        "prescriptions",
        sa.Column("verification_state", sa.String(length=24), server_default="not_required", nullable=False),
    )
    op.add_column("prescriptions", sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    if sqlite:
        op.execute(
            "ALTER TABLE prescriptions ADD COLUMN claimed_by INTEGER"
            " CONSTRAINT fk_prescriptions_claimed_by_users REFERENCES users (id)"
        )
    else:
        op.add_column("prescriptions", sa.Column("claimed_by", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_prescriptions_claimed_by_users", "prescriptions", "users", ["claimed_by"], ["id"]
        )
    op.add_column("prescriptions", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("prescriptions", sa.Column("awaiting_since", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_prescriptions_verification_state", "prescriptions", ["verification_state"])
    op.create_table(
        "prescription_verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prescription_id", sa.Integer(), nullable=False),
        sa.Column("prescription_version", sa.Integer(), nullable=False),
        sa.Column("pharmacist_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason_codes", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("license_state", sa.String(length=2), nullable=True),
        sa.Column("license_number", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["pharmacist_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["prescription_id"], ["prescriptions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prescription_id", "prescription_version"),
    )
    op.create_index(
        "ix_prescription_verifications_pharmacist_id", "prescription_verifications", ["pharmacist_id"]
    )
    op.create_index(
        "ix_prescription_verifications_prescription_id", "prescription_verifications", ["prescription_id"]
    )
    op.create_table(
        "prescription_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prescription_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("edited_by", sa.Integer(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("previous_state", sa.String(length=24), nullable=False),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["edited_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["prescription_id"], ["prescriptions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_prescription_revisions_prescription_id", "prescription_revisions", ["prescription_id"]
    )
    if sqlite:
        _recreate_media_on_sqlite()
    else:
        op.add_column("media", sa.Column("prescription_id", sa.Integer(), nullable=True))
        op.add_column("media", sa.Column("page", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_media_prescription_id", "media", "prescriptions", ["prescription_id"], ["id"]
        )
        op.create_unique_constraint(
            "uq_media_prescription_kind_sha256", "media", ["prescription_id", "kind", "sha256"]
        )
        op.drop_constraint("ck_media_one_owner", "media", type_="check")
        op.create_check_constraint("ck_media_one_owner", "media", OWNER_CHECK)
    op.create_index("ix_media_prescription_id", "media", ["prescription_id"])


def _recreate_media_on_sqlite() -> None:
    bind = op.get_bind()
    table_sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'media'")
    create = str(table_sql.scalar())
    index_sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'media' AND sql IS NOT NULL"
    )
    indexes = [str(row[0]) for row in index_sql]
    columns = [str(row[1]) for row in bind.exec_driver_sql("PRAGMA table_info(media)")]
    old_check = f"CHECK ({OLD_OWNER_CHECK})"
    if old_check not in create:
        raise RuntimeError("the media table is not as revision 0011 left it")
    # The new columns first (a column may not follow the table's constraints), the constraints last.
    open_, close = create.index("("), create.rindex(")")
    create = (
        create[: open_ + 1]
        + "\n\tprescription_id INTEGER, page INTEGER,"
        + create[open_ + 1 : close].replace(old_check, f"CHECK ({OWNER_CHECK})")
        + ",\n\tCONSTRAINT fk_media_prescription_id"
        + " FOREIGN KEY(prescription_id) REFERENCES prescriptions (id)"
        + ",\n\tCONSTRAINT uq_media_prescription_kind_sha256 UNIQUE (prescription_id, kind, sha256)"
        + create[close:]
    )
    listed = ", ".join(columns)
    # Renaming media aside rewrites every reference to it (foreign keys are on): those are read first
    # and put back once the new table holds the name, as SQLite's documented way of changing a
    # table's schema does (writable_schema with the schema version bumped).
    referring = [
        (str(name), str(sql))
        for name, sql in bind.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name != 'media'"
            " AND sql LIKE '%REFERENCES media %'"
        )
    ]
    op.execute("ALTER TABLE media RENAME TO _media_before_0012")
    op.execute(create)
    # The column names are the table's own, read from SQLite.
    op.execute(f"INSERT INTO media ({listed}) SELECT {listed} FROM _media_before_0012")  # noqa: S608
    schema_version = int(bind.exec_driver_sql("PRAGMA schema_version").scalar() or 0)
    op.execute("PRAGMA writable_schema = ON")
    for name, sql in referring:
        bind.exec_driver_sql(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (sql, name)
        )
    op.execute(f"PRAGMA schema_version = {schema_version + 1}")
    op.execute("PRAGMA writable_schema = OFF")
    op.execute("DROP TABLE _media_before_0012")
    for statement in indexes:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DELETE FROM media WHERE prescription_id IS NOT NULL")
    op.drop_index("ix_media_prescription_id", "media")
    if _sqlite():
        # A check cannot change in place on SQLite and the way upgrade takes is not worth its risk
        # backwards: the new check holds for every row left, and the two columns stay, empty.
        pass
    else:
        op.drop_constraint("ck_media_one_owner", "media", type_="check")
        op.create_check_constraint("ck_media_one_owner", "media", OLD_OWNER_CHECK)
        op.drop_constraint("uq_media_prescription_kind_sha256", "media", type_="unique")
        op.drop_constraint("fk_media_prescription_id", "media", type_="foreignkey")
        op.drop_column("media", "page")
        op.drop_column("media", "prescription_id")
    op.drop_table("prescription_revisions")
    op.drop_table("prescription_verifications")
    op.drop_index("ix_prescriptions_verification_state", "prescriptions")
    if not _sqlite():
        op.drop_constraint("fk_prescriptions_claimed_by_users", "prescriptions", type_="foreignkey")
    for column in ("awaiting_since", "lease_expires_at", "claimed_by", "version", "verification_state"):
        op.drop_column("prescriptions", column)
    op.drop_column("sites", "requires_pv1")
