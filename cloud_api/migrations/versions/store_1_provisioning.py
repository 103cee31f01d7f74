"""Provisioning: company, customers, zones, guards, equipment, MQTT, master keys, audit log.

Also the device_commands table and the revocation columns of devices, gateways and
nfc_tags, plus sites.customer_id and nfc_tags.site_id.

Revision ID: store_1_provisioning
Revises: 0001_baseline
Create Date: 2026-11-25 06:43:19.173279
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "store_1_provisioning"
down_revision: str | Sequence[str] | None = "0001_baseline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _add_fk_column(table: str, column: str, referred: str, name: str) -> None:
    """Add a nullable id column with a named foreign key, without copying ``table``.

    SQLite's ALTER TABLE ADD COLUMN takes an inline REFERENCES clause; batch mode would
    instead copy and drop the table, and dropping ``sites`` or ``nfc_tags`` fails under
    ``PRAGMA foreign_keys=ON`` as soon as rows of other tables point at them.
    """
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN {column} INTEGER "
            f"CONSTRAINT {name} REFERENCES {referred} (id)"
        )
    else:
        op.add_column(table, sa.Column(column, sa.BigInteger(), nullable=True))
        op.create_foreign_key(name, table, referred, [column], ["id"])


def _drop_fk_column(table: str, column: str, name: str) -> None:
    """Undo :func:`_add_fk_column` (SQLite: a batch copy, as it cannot drop such a column)."""
    if op.get_bind().dialect.name == "sqlite":
        # SQLite does not report the inline constraint's name; the copy leaves it out.
        with op.batch_alter_table(table, recreate="always") as batch_op:
            batch_op.drop_column(column)
    else:
        op.drop_constraint(name, table, type_="foreignkey")
        op.drop_column(table, column)


def upgrade() -> None:
    op.create_table(
        "companies",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_companies")),
        sa.UniqueConstraint("name", name=op.f("uq_companies_name")),
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_customers_company_id_companies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("company_id", "name", name=op.f("uq_customers_company_id_name")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column(
            "actor_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("actor_role", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("object_type", sa.String(length=30), nullable=False),
        sa.Column("object_id", sa.String(length=100), nullable=False),
        sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_user_id"], ["users.id"], name=op.f("fk_audit_log_actor_user_id_users")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_audit_log_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_site_id"), ["site_id"], unique=False)

    op.create_table(
        "guards",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("employee_no", sa.String(length=50), nullable=True),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_guards_site_id_sites")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_guards_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guards")),
        sa.UniqueConstraint("employee_no", name=op.f("uq_guards_employee_no")),
        sa.UniqueConstraint("user_id", name=op.f("uq_guards_user_id")),
    )
    with op.batch_alter_table("guards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guards_site_id"), ["site_id"], unique=False)

    op.create_table(
        "site_master_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_site_master_keys_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site_master_keys")),
        sa.UniqueConstraint("site_id", "version", name=op.f("uq_site_master_keys_site_id_version")),
    )
    op.create_table(
        "device_commands",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "device_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("cmd_seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("key_id", sa.SmallInteger(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("issued_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_pk"], ["devices.id"], name=op.f("fk_device_commands_device_pk_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_commands")),
        sa.UniqueConstraint(
            "device_pk", "cmd_seq", name=op.f("uq_device_commands_device_pk_cmd_seq")
        ),
    )
    op.create_table(
        "equipment_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("serial", sa.String(length=100), nullable=True),
        sa.Column(
            "tag_device_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_equipment_items_site_id_sites")
        ),
        sa.ForeignKeyConstraint(
            ["tag_device_pk"], ["devices.id"], name=op.f("fk_equipment_items_tag_device_pk_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equipment_items")),
        sa.UniqueConstraint("tag_device_pk", name=op.f("uq_equipment_items_tag_device_pk")),
    )
    with op.batch_alter_table("equipment_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_equipment_items_site_id"), ["site_id"], unique=False)

    op.create_table(
        "mqtt_credentials",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("device_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "gateway_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_pk"], ["devices.id"], name=op.f("fk_mqtt_credentials_device_pk_devices")
        ),
        sa.ForeignKeyConstraint(
            ["gateway_pk"], ["gateways.id"], name=op.f("fk_mqtt_credentials_gateway_pk_gateways")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_mqtt_credentials_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mqtt_credentials")),
        sa.UniqueConstraint("username", name=op.f("uq_mqtt_credentials_username")),
    )
    with op.batch_alter_table("mqtt_credentials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mqtt_credentials_site_id"), ["site_id"], unique=False)

    op.create_table(
        "wearable_assignments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("guard_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "device_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_pk"], ["devices.id"], name=op.f("fk_wearable_assignments_device_pk_devices")
        ),
        sa.ForeignKeyConstraint(
            ["guard_id"], ["guards.id"], name=op.f("fk_wearable_assignments_guard_id_guards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wearable_assignments")),
    )
    with op.batch_alter_table("wearable_assignments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wearable_assignments_device_pk"), ["device_pk"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_wearable_assignments_guard_id"), ["guard_id"], unique=False
        )

    op.create_table(
        "zones",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("post_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["post_id"], ["posts.id"], name=op.f("fk_zones_post_id_posts")),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_zones_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zones")),
        sa.UniqueConstraint("site_id", "name", name=op.f("uq_zones_site_id_name")),
    )
    op.create_table(
        "equipment_assignments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("guard_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("returned_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["guard_id"], ["guards.id"], name=op.f("fk_equipment_assignments_guard_id_guards")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["equipment_items.id"],
            name=op.f("fk_equipment_assignments_item_id_equipment_items"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equipment_assignments")),
    )
    with op.batch_alter_table("equipment_assignments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_equipment_assignments_guard_id"), ["guard_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_equipment_assignments_item_id"), ["item_id"], unique=False
        )

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revoked_reason", sa.String(length=200), nullable=True))

    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_reason", sa.String(length=200), nullable=True))

    _add_fk_column("nfc_tags", "site_id", "sites", "fk_nfc_tags_site_id_sites")
    with op.batch_alter_table("nfc_tags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_source", sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column("master_key_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revoked_reason", sa.String(length=200), nullable=True))
    _add_fk_column("sites", "customer_id", "customers", "fk_sites_customer_id_customers")


def downgrade() -> None:
    _drop_fk_column("sites", "customer_id", "fk_sites_customer_id_customers")

    with op.batch_alter_table("nfc_tags", schema=None) as batch_op:
        batch_op.drop_column("revoked_reason")
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("master_key_version")
        batch_op.drop_column("key_source")
    _drop_fk_column("nfc_tags", "site_id", "fk_nfc_tags_site_id_sites")

    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.drop_column("revoked_reason")

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("revoked_reason")
        batch_op.drop_column("revoked_at")

    with op.batch_alter_table("equipment_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_equipment_assignments_item_id"))
        batch_op.drop_index(batch_op.f("ix_equipment_assignments_guard_id"))

    op.drop_table("equipment_assignments")
    op.drop_table("zones")
    with op.batch_alter_table("wearable_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wearable_assignments_guard_id"))
        batch_op.drop_index(batch_op.f("ix_wearable_assignments_device_pk"))

    op.drop_table("wearable_assignments")
    with op.batch_alter_table("mqtt_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mqtt_credentials_site_id"))

    op.drop_table("mqtt_credentials")
    with op.batch_alter_table("equipment_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_equipment_items_site_id"))

    op.drop_table("equipment_items")
    op.drop_table("device_commands")
    op.drop_table("site_master_keys")
    with op.batch_alter_table("guards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_guards_site_id"))

    op.drop_table("guards")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_site_id"))
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))
        batch_op.drop_index(batch_op.f("ix_audit_log_action"))

    op.drop_table("audit_log")
    op.drop_table("customers")
    op.drop_table("companies")
