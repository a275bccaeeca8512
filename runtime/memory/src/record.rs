//! What a memory is, how it is laid out in a LanceDB table, and how a
//! structured filter becomes a typed predicate (never SQL text, so no value a
//! guest sends can change the query's shape).

use std::sync::Arc;

use datafusion_functions_nested::expr_fn::{array_has_any, make_array};
use lancedb::arrow::arrow_array::builder::{ListBuilder, StringBuilder};
use lancedb::arrow::arrow_array::cast::AsArray;
use lancedb::arrow::arrow_array::types::{Float32Type, Int64Type};
use lancedb::arrow::arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray,
};
use lancedb::arrow::arrow_schema::{DataType, Field, Schema, SchemaRef};
use lancedb::expr::{DfExpr, col, lit};

use warden_api::memory::{Entry, Filter, MemoryError, Meta};

pub(crate) const VECTOR: &str = "vector";
pub(crate) const CONTENT: &str = "content";
/// The string columns a filter compares for equality, with the name a
/// caller knows them by.
const EQ_COLUMNS: [(&str, &str); 5] = [
    ("kind", "kind"),
    ("source", "source"),
    ("task_id", "task-id"),
    ("version", "version"),
    ("platform", "platform"),
];
/// Every column but the vector: what reads return.
pub(crate) const READ_COLUMNS: [&str; 11] = [
    "id",
    CONTENT,
    "kind",
    "source",
    "task_id",
    "version",
    "platform",
    "tags",
    "extra",
    "created_at",
    "updated_at",
];
pub(crate) const META_EMBEDDER: &str = "warden.embedder";

/// The table layout for vectors of `dimension` floats made by `embedder`.
pub(crate) fn schema(embedder: &str, dimension: usize) -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let dimension = i32::try_from(dimension).unwrap_or(i32::MAX);
    let schema = Schema::new(vec![
        text("id", false),
        text(CONTENT, false),
        text("kind", true),
        text("source", true),
        text("task_id", true),
        text("version", true),
        text("platform", true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ),
        text("extra", true),
        Field::new("created_at", DataType::Int64, false),
        Field::new("updated_at", DataType::Int64, false),
        Field::new(
            VECTOR,
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, true)),
                dimension,
            ),
            false,
        ),
    ]);
    Arc::new(schema.with_metadata([(META_EMBEDDER.to_string(), embedder.to_string())].into()))
}

/// The vector dimension of a table's schema.
pub(crate) fn dimension_of(schema: &Schema) -> Option<usize> {
    match schema.field_with_name(VECTOR).ok()?.data_type() {
        DataType::FixedSizeList(_, n) => usize::try_from(*n).ok(),
        _ => None,
    }
}

/// Rows to write: entries with their vectors, in `schema`'s layout.
pub(crate) fn to_batch(
    schema: &SchemaRef,
    rows: &[(Entry, Vec<f32>)],
) -> Result<RecordBatch, MemoryError> {
    let dimension = dimension_of(schema).unwrap_or(0);
    let strings = |f: &dyn Fn(&Entry) -> Option<&str>| -> ArrayRef {
        Arc::new(rows.iter().map(|(e, _)| f(e)).collect::<StringArray>())
    };
    let mut tags = ListBuilder::new(StringBuilder::new());
    for (e, _) in rows {
        for t in &e.meta.tags {
            tags.values().append_value(t);
        }
        tags.append(true);
    }
    let mut flat = Vec::with_capacity(rows.len() * dimension);
    for (_, v) in rows {
        if v.len() != dimension {
            return Err(MemoryError::Unavailable(format!(
                "the embedder returned {} dimensions, the table holds {dimension}",
                v.len()
            )));
        }
        flat.extend_from_slice(v);
    }
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let vectors = FixedSizeListArray::try_new(
        item,
        i32::try_from(dimension).unwrap_or(i32::MAX),
        Arc::new(Float32Array::from(flat)),
        None,
    )
    .map_err(internal)?;
    let extras: Vec<Option<String>> = rows
        .iter()
        .map(|(e, _)| e.meta.extra.as_ref().map(|v| v.to_string()))
        .collect();
    let columns: Vec<ArrayRef> = vec![
        strings(&|e| Some(&e.id)),
        strings(&|e| Some(&e.content)),
        strings(&|e| e.meta.kind.as_deref()),
        strings(&|e| e.meta.source.as_deref()),
        strings(&|e| e.meta.task_id.as_deref()),
        strings(&|e| e.meta.version.as_deref()),
        strings(&|e| e.meta.platform.as_deref()),
        Arc::new(tags.finish()),
        Arc::new(extras.iter().map(|s| s.as_deref()).collect::<StringArray>()),
        Arc::new(
            rows.iter()
                .map(|(e, _)| e.created_at)
                .collect::<Int64Array>(),
        ),
        Arc::new(
            rows.iter()
                .map(|(e, _)| e.updated_at)
                .collect::<Int64Array>(),
        ),
        Arc::new(vectors),
    ];
    RecordBatch::try_new(schema.clone(), columns).map_err(internal)
}

/// Entries (and the score column, if any) out of a query's result.
pub(crate) fn from_batch(
    batch: &RecordBatch,
    score: Option<&str>,
) -> Result<Vec<(Entry, Option<f32>)>, MemoryError> {
    // An empty answer may come without the projected columns.
    if batch.num_rows() == 0 {
        return Ok(vec![]);
    }
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| internal(format!("the result has no column {name:?}")))
    };
    let text = |name: &str| -> Result<StringArray, MemoryError> {
        Ok(column(name)?.as_string::<i32>().clone())
    };
    let [id, content, kind, source, task_id, version, platform] = [
        "id", CONTENT, "kind", "source", "task_id", "version", "platform",
    ]
    .map(text);
    let (id, content) = (id?, content?);
    let (kind, source, task_id, version, platform) =
        (kind?, source?, task_id?, version?, platform?);
    let extra = text("extra")?;
    let tags = column("tags")?.as_list::<i32>().clone();
    let created = column("created_at")?.as_primitive::<Int64Type>().clone();
    let updated = column("updated_at")?.as_primitive::<Int64Type>().clone();
    let scores = match score {
        Some(name) => Some(column(name)?.as_primitive::<Float32Type>().clone()),
        None => None,
    };
    let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let row_tags = tags.value(i);
        let row_tags = row_tags.as_string::<i32>();
        let extra = match opt(&extra, i) {
            Some(s) => Some(serde_json::from_str(&s).map_err(internal)?),
            None => None,
        };
        let entry = Entry {
            id: id.value(i).to_string(),
            content: content.value(i).to_string(),
            meta: Meta {
                kind: opt(&kind, i),
                source: opt(&source, i),
                task_id: opt(&task_id, i),
                version: opt(&version, i),
                platform: opt(&platform, i),
                tags: (0..row_tags.len())
                    .map(|j| row_tags.value(j).to_string())
                    .collect(),
                extra,
            },
            created_at: created.value(i),
            updated_at: updated.value(i),
        };
        let score = scores.as_ref().map(|s| s.value(i));
        out.push((entry, score));
    }
    Ok(out)
}

/// The typed predicate for `filter`, or `None` when it keeps every row.
pub(crate) fn predicate(filter: &Filter) -> Option<DfExpr> {
    let values = [
        &filter.kind,
        &filter.source,
        &filter.task_id,
        &filter.version,
        &filter.platform,
    ];
    let mut parts: Vec<DfExpr> = EQ_COLUMNS
        .iter()
        .zip(values)
        .filter_map(|((column, _), value)| value.as_ref().map(|v| col(*column).eq(lit(v.clone()))))
        .collect();
    if !filter.tags.is_empty() {
        let wanted = filter.tags.iter().map(|t| lit(t.clone())).collect();
        parts.push(array_has_any(col("tags"), make_array(wanted)));
    }
    if let Some(after) = filter.created_after {
        parts.push(col("created_at").gt(lit(after)));
    }
    if let Some(before) = filter.created_before {
        parts.push(col("created_at").lt(lit(before)));
    }
    parts.into_iter().reduce(DfExpr::and)
}

/// The predicate selecting one id.
pub(crate) fn id_is(id: &str) -> DfExpr {
    col("id").eq(lit(id.to_string()))
}

/// Limits on what one call may send.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of content per entry.
    pub max_content_bytes: usize,
    /// Bytes of metadata per entry (all strings, tags and the JSON).
    pub max_meta_bytes: usize,
    pub max_tags: usize,
    /// The largest `top-k` / `limit` a search or find may ask.
    pub max_top_k: u32,
    /// Entries a namespace may hold.
    pub max_entries: u64,
    /// Rows from which a namespace gets a vector index (below it, exact
    /// search is as fast and exact).
    pub index_threshold: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_content_bytes: 64 * 1024,
            max_meta_bytes: 16 * 1024,
            max_tags: 32,
            max_top_k: 100,
            max_entries: 1_000_000,
            index_threshold: 20_000,
        }
    }
}

impl Limits {
    pub(crate) fn check_content(&self, content: &str) -> Result<(), MemoryError> {
        if content.trim().is_empty() {
            return Err(crate::invalid("content", "is empty; store some text"));
        }
        if content.len() > self.max_content_bytes {
            return Err(crate::invalid(
                "content",
                format!(
                    "is {} bytes, over the limit of {}; split it into smaller entries (`warden memory import` chunks files)",
                    content.len(),
                    self.max_content_bytes
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn check_meta(&self, meta: &Meta) -> Result<(), MemoryError> {
        let mut size = 0;
        for (value, (_, name)) in [
            &meta.kind,
            &meta.source,
            &meta.task_id,
            &meta.version,
            &meta.platform,
        ]
        .into_iter()
        .zip(EQ_COLUMNS)
        {
            if let Some(v) = value {
                check_word(name, v)?;
                size += v.len();
            }
        }
        if meta.tags.len() > self.max_tags {
            return Err(crate::invalid(
                "tags",
                format!(
                    "has {} tags, the limit is {}",
                    meta.tags.len(),
                    self.max_tags
                ),
            ));
        }
        for (i, t) in meta.tags.iter().enumerate() {
            check_word(&format!("tags[{i}]"), t)?;
            size += t.len();
        }
        if let Some(extra) = &meta.extra {
            size += extra.to_string().len();
        }
        if size > self.max_meta_bytes {
            return Err(crate::invalid(
                "meta",
                format!("is {size} bytes, over the limit of {}", self.max_meta_bytes),
            ));
        }
        Ok(())
    }

    pub(crate) fn check_filter(&self, filter: &Filter) -> Result<(), MemoryError> {
        for (value, (_, name)) in [
            &filter.kind,
            &filter.source,
            &filter.task_id,
            &filter.version,
            &filter.platform,
        ]
        .into_iter()
        .zip(EQ_COLUMNS)
        {
            if let Some(v) = value {
                check_word(&format!("filter.{name}"), v)?;
            }
        }
        for (i, t) in filter.tags.iter().enumerate() {
            check_word(&format!("filter.tags[{i}]"), t)?;
        }
        Ok(())
    }

    pub(crate) fn check_top_k(&self, field: &str, k: u32) -> Result<usize, MemoryError> {
        if k == 0 || k > self.max_top_k {
            return Err(crate::invalid(
                field,
                format!("is {k}; ask for 1 to {}", self.max_top_k),
            ));
        }
        Ok(k as usize)
    }
}

/// A metadata string: any text, but not empty and not a control character
/// (a tag with a NUL in it is a mistake, not a tag).
fn check_word(field: &str, value: &str) -> Result<(), MemoryError> {
    if value.is_empty() {
        return Err(crate::invalid(field, "is empty; leave it out instead"));
    }
    if value.chars().any(char::is_control) {
        return Err(crate::invalid(
            field,
            format!("{value:?} contains a control character"),
        ));
    }
    Ok(())
}

pub(crate) fn internal(e: impl std::fmt::Display) -> MemoryError {
    MemoryError::Unavailable(format!("memory store: {e}"))
}
