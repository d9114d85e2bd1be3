//! Limit/offset pagination shaped like the platform's:
//! `{limit, offset, total_count, next, previous, results}`.

use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::{Value, json};

/// Default and largest page sizes.
pub const DEFAULT_LIMIT: i64 = 50;
/// The largest page a client may ask for.
pub const MAX_LIMIT: i64 = 1000;

/// A validated page request. Bad values fall back to the defaults, as DRF does.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    /// Reads `limit` and `offset` from a request's query parameters.
    pub fn from_params(q: &std::collections::HashMap<String, String>) -> Page {
        Page::from_query(
            q.get("limit").map(String::as_str),
            q.get("offset").map(String::as_str),
        )
    }

    /// Reads `limit` and `offset` from raw query values.
    pub fn from_query(limit: Option<&str>, offset: Option<&str>) -> Page {
        let limit = limit
            .and_then(|l| l.parse::<i64>().ok())
            .filter(|l| *l > 0)
            .map_or(DEFAULT_LIMIT, |l| l.min(MAX_LIMIT));
        let offset = offset
            .and_then(|o| o.parse::<i64>().ok())
            .filter(|o| *o >= 0)
            .unwrap_or(0);
        Page { limit, offset }
    }

    /// The response body; `base` is the absolute URL of the list without paging
    /// parameters but with any filters (`extra`, already encoded).
    pub fn envelope<T: Serialize>(
        &self,
        base: &str,
        extra: &str,
        total: i64,
        results: Vec<T>,
    ) -> Value {
        let link = |offset: i64| {
            let sep = if extra.is_empty() { "" } else { "&" };
            format!("{base}?{extra}{sep}limit={}&offset={offset}", self.limit)
        };
        // Saturating: a client may ask for any offset up to i64::MAX.
        let next = (self.offset.saturating_add(self.limit) < total)
            .then(|| link(self.offset + self.limit));
        let previous = (self.offset > 0).then(|| link((self.offset - self.limit).max(0)));
        json!({
            "limit": self.limit,
            "offset": self.offset,
            "total_count": total,
            "next": next,
            "previous": previous,
            "results": results,
        })
    }
}

impl Page {
    /// The page of `results` as the answer to a request for `path` (with the
    /// filters in `extra`) whose headers are `headers`.
    pub fn respond<T: Serialize>(
        &self,
        headers: &HeaderMap,
        path: &str,
        extra: &str,
        total: i64,
        results: Vec<T>,
    ) -> axum::Json<Value> {
        axum::Json(self.envelope(&absolute_url(headers, path), extra, total, results))
    }
}

impl Page {
    /// Like [`Page::respond`] for a list with filters, shaped like the platform's
    /// record history: `total_count` counts every item, `filtered_count` those
    /// matching the filters (which `next` and `previous` page through).
    pub fn respond_filtered<T: Serialize>(
        &self,
        headers: &HeaderMap,
        path: &str,
        extra: &str,
        total: i64,
        filtered: i64,
        results: Vec<T>,
    ) -> axum::Json<Value> {
        let mut body = self.envelope(&absolute_url(headers, path), extra, filtered, results);
        body["total_count"] = json!(total);
        body["filtered_count"] = json!(filtered);
        axum::Json(body)
    }
}

/// `http://host/path` of the current request, for pagination links.
pub fn absolute_url(headers: &HeaderMap, path: &str) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_offset_does_not_overflow() {
        // Found by schemathesis: offset + limit overflowed and the handler panicked.
        let page = Page::from_query(Some("1000"), Some(&(i64::MAX - 1).to_string()));
        let body = page.envelope("http://h/x/", "", 3, Vec::<i64>::new());
        assert_eq!(body["next"], Value::Null);
        assert!(body["previous"].as_str().is_some());
    }
}
