//! Object classes and their fields.

use sqlx::AssertSqlSafe;

use super::{Db, now_ms};
use crate::domain::{ClassField, FieldType, ObjectClass, iso_ms};

const CLASS_COLUMNS: &str = "c.id, c.name, c.identifier, c.description, c.created_at, c.created_by,
     c.modified_at, c.modified_by,
     (SELECT COUNT(*) FROM object_records r WHERE r.object_class_id = c.id) AS record_count";

/// An `object_classes` row with its record count, as selected by `CLASS_COLUMNS`.
#[derive(sqlx::FromRow)]
struct ClassRow {
    id: i64,
    name: String,
    identifier: String,
    description: String,
    created_at: i64,
    created_by: i64,
    modified_at: i64,
    modified_by: i64,
    record_count: i64,
}

impl From<ClassRow> for ObjectClass {
    fn from(r: ClassRow) -> Self {
        ObjectClass {
            id: r.id,
            name: r.name,
            identifier: r.identifier,
            description: r.description,
            created_at: iso_ms(r.created_at),
            created_by: r.created_by,
            modified_at: iso_ms(r.modified_at),
            modified_by: r.modified_by,
            record_count: r.record_count,
        }
    }
}

/// A `class_fields` row, as selected by `FIELD_COLUMNS`.
#[derive(sqlx::FromRow)]
struct FieldRow {
    id: i64,
    object_class_id: i64,
    label: String,
    alias: String,
    #[sqlx(try_from = "String")]
    field_type: FieldType,
    created_at: i64,
}

impl From<FieldRow> for ClassField {
    fn from(r: FieldRow) -> Self {
        ClassField {
            id: r.id,
            object_class: r.object_class_id,
            label: r.label,
            alias: r.alias,
            field_type: r.field_type,
            created_at: iso_ms(r.created_at),
        }
    }
}

const FIELD_COLUMNS: &str = "id, object_class_id, label, alias, field_type, created_at";

impl Db {
    /// Inserts a class; a taken name is a unique violation.
    pub async fn create_class(
        &self,
        name: &str,
        description: &str,
        user_id: i64,
    ) -> Result<ObjectClass, sqlx::Error> {
        let now = now_ms();
        let identifier = uuid::Uuid::new_v4().to_string();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO object_classes (name, identifier, description, created_at, created_by, modified_at, modified_by)
             VALUES ($1, $2, $3, $4, $5, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(&identifier)
        .bind(description)
        .bind(now)
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        self.class_by_id(id).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// One class with its record count.
    pub async fn class_by_id(&self, id: i64) -> Result<Option<ObjectClass>, sqlx::Error> {
        let row: Option<ClassRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {CLASS_COLUMNS} FROM object_classes c WHERE c.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(ObjectClass::from))
    }

    /// A page of classes, ordered by id, and the total count.
    pub async fn list_classes(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ObjectClass>, i64), sqlx::Error> {
        let rows: Vec<ClassRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {CLASS_COLUMNS} FROM object_classes c ORDER BY c.id LIMIT $1 OFFSET $2"
        )))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) AS n FROM object_classes")
            .fetch_one(&self.pool)
            .await?;
        Ok((rows.into_iter().map(ObjectClass::from).collect(), total))
    }

    /// Inserts a field; a taken label (in the class) or alias is a unique violation.
    pub async fn create_field(
        &self,
        class_id: i64,
        label: &str,
        alias: &str,
        field_type: FieldType,
    ) -> Result<ClassField, sqlx::Error> {
        let row: FieldRow = sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO class_fields (object_class_id, label, alias, field_type, created_at)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING {FIELD_COLUMNS}"
        )))
        .bind(class_id)
        .bind(label)
        .bind(alias)
        .bind(field_type.as_str())
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    /// The fields of a class, by id.
    pub async fn list_fields(&self, class_id: i64) -> Result<Vec<ClassField>, sqlx::Error> {
        let rows: Vec<FieldRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {FIELD_COLUMNS} FROM class_fields WHERE object_class_id = $1 ORDER BY id"
        )))
        .bind(class_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ClassField::from).collect())
    }

    /// One field by id.
    pub async fn field_by_id(&self, id: i64) -> Result<Option<ClassField>, sqlx::Error> {
        let row: Option<FieldRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {FIELD_COLUMNS} FROM class_fields WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(ClassField::from))
    }
}
