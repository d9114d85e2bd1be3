//! Object classes and their fields.

use sqlx::{AssertSqlSafe, Row};

use super::{Db, now_ms};
use crate::domain::{ClassField, FieldType, ObjectClass, iso_ms};

const CLASS_COLUMNS: &str = "c.id, c.name, c.identifier, c.description, c.created_at, c.created_by,
     c.modified_at, c.modified_by,
     (SELECT COUNT(*) FROM object_records r WHERE r.object_class_id = c.id) AS record_count";

fn class_from_row(row: &sqlx::any::AnyRow) -> Result<ObjectClass, sqlx::Error> {
    Ok(ObjectClass {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        identifier: row.try_get("identifier")?,
        description: row.try_get("description")?,
        created_at: iso_ms(row.try_get("created_at")?),
        created_by: row.try_get("created_by")?,
        modified_at: iso_ms(row.try_get("modified_at")?),
        modified_by: row.try_get("modified_by")?,
        record_count: row.try_get("record_count")?,
    })
}

fn field_from_row(row: &sqlx::any::AnyRow) -> Result<ClassField, sqlx::Error> {
    let t: String = row.try_get("field_type")?;
    Ok(ClassField {
        id: row.try_get("id")?,
        object_class: row.try_get("object_class_id")?,
        label: row.try_get("label")?,
        alias: row.try_get("alias")?,
        field_type: FieldType::parse(&t)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown field type {t}").into()))?,
        created_at: iso_ms(row.try_get("created_at")?),
    })
}

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
        let row = sqlx::query(
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
        let id: i64 = row.try_get("id")?;
        self.class_by_id(id).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// One class with its record count.
    pub async fn class_by_id(&self, id: i64) -> Result<Option<ObjectClass>, sqlx::Error> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CLASS_COLUMNS} FROM object_classes c WHERE c.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(class_from_row).transpose()
    }

    /// A page of classes, ordered by id, and the total count.
    pub async fn list_classes(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ObjectClass>, i64), sqlx::Error> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CLASS_COLUMNS} FROM object_classes c ORDER BY c.id LIMIT $1 OFFSET $2"
        )))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM object_classes")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok((
            rows.iter().map(class_from_row).collect::<Result<_, _>>()?,
            total,
        ))
    }

    /// Inserts a field; a taken label (in the class) or alias is a unique violation.
    pub async fn create_field(
        &self,
        class_id: i64,
        label: &str,
        alias: &str,
        field_type: FieldType,
    ) -> Result<ClassField, sqlx::Error> {
        let row = sqlx::query(
            "INSERT INTO class_fields (object_class_id, label, alias, field_type, created_at)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING id, object_class_id, label, alias, field_type, created_at",
        )
        .bind(class_id)
        .bind(label)
        .bind(alias)
        .bind(field_type.as_str())
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        field_from_row(&row)
    }

    /// The fields of a class, by id.
    pub async fn list_fields(&self, class_id: i64) -> Result<Vec<ClassField>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, object_class_id, label, alias, field_type, created_at
             FROM class_fields WHERE object_class_id = $1 ORDER BY id",
        )
        .bind(class_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(field_from_row).collect()
    }

    /// One field by id.
    pub async fn field_by_id(&self, id: i64) -> Result<Option<ClassField>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT id, object_class_id, label, alias, field_type, created_at
             FROM class_fields WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(field_from_row).transpose()
    }
}
