//! The machinery behind the one settings table in `config.rs`: the `schema!` macro
//! that turns each entry into a typed field, its default and a [`Spec`] row; the value
//! kinds (duration, size, …) that parse what a person writes; and the loader, the
//! unknown-variable warning and the docs table, which all read [`SCHEMA`] and nothing
//! else, so they cannot drift apart.
//!
//! [`SCHEMA`]: super::SCHEMA

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use super::{ConfigError, SCHEMA, Settings};

/// One setting: everything the loader, the warnings and the docs know about it.
pub struct Spec {
    /// The flat name: the file key; `INTAKE_` + upper case is the variable.
    pub name: &'static str,
    /// The group of `Settings` holding it.
    pub group: &'static str,
    /// The type as the docs name it, with the unit of a plain number.
    pub kind: &'static str,
    /// Whether the value must never be echoed in a message.
    pub secret: bool,
    /// The default as a person would write it; `None`: unset (or empty).
    pub default: Option<&'static str>,
    /// How the docs call the value when there is no default.
    pub unset: &'static str,
    /// A value as a person would write it.
    pub example: &'static str,
    /// The doc comment's lines.
    pub doc: &'static [&'static str],
    /// Older names still accepted, each with the unit of its plain numbers.
    pub aliases: &'static [Alias],
    /// Parses `raw` as this setting's kind and stores it.
    pub set: fn(&mut Settings, &str) -> Result<(), String>,
}

/// An older name of a setting (`presign_ttl_secs` for `presign_ttl`).
pub struct Alias {
    /// The old flat name.
    pub name: &'static str,
    /// What a plain number meant under it.
    pub plain: Plain,
}

/// The unit an old name's plain numbers were in.
#[derive(Clone, Copy)]
pub enum Plain {
    /// Seconds (`*_secs`).
    Secs,
    /// Milliseconds (`*_ms`).
    Millis,
    /// Gigabytes, 10^9 bytes (`max_upload_gb`).
    Gb,
}

impl Plain {
    /// The old value in today's syntax: a plain number gets the old unit.
    fn convert(self, raw: &str) -> String {
        let raw = raw.trim();
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return raw.to_string();
        }
        match self {
            Plain::Secs => format!("{raw}s"),
            Plain::Millis => format!("{raw}ms"),
            Plain::Gb => format!("{raw} GB"),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Plain::Secs => "seconds",
            Plain::Millis => "milliseconds",
            Plain::Gb => "GB",
        }
    }
}

/// How a setting's text becomes its value. Implemented by the kinds below; the
/// schema names one per setting and the compiler checks it yields the field's type.
pub trait Kind {
    /// The value stored in `Settings`.
    type Out;
    /// The type as the docs name it.
    const NAME: &'static str;
    /// Whether values of this kind are secrets.
    const SECRET: bool = false;
    /// How the docs call the value of a setting without a default.
    const UNSET: &'static str = "unset";
    /// Parses what a person wrote; the error says what was expected.
    fn parse(raw: &str) -> Result<Self::Out, String>;
    /// The value of a setting without a default (optional and list kinds only).
    fn unset() -> Option<Self::Out> {
        None
    }
}

/// The default of a setting, parsed by its own kind (so a default in the table that
/// does not parse fails every test at once).
pub fn default_of<K: Kind>(name: &str, default: Option<&str>) -> K::Out {
    match default {
        Some(text) => K::parse(text)
            .unwrap_or_else(|e| panic!("the default of {name} ({text:?}) does not parse: {e}")),
        None => K::unset().unwrap_or_else(|| panic!("{name} needs a default")),
    }
}

/// Text as written.
pub struct Text;
impl Kind for Text {
    type Out = String;
    const NAME: &'static str = "text";
    fn parse(raw: &str) -> Result<String, String> {
        Ok(raw.to_string())
    }
}

/// Text never printed (held in a `secrecy` type).
pub struct Secret;
impl Kind for Secret {
    type Out = SecretString;
    const NAME: &'static str = "secret text";
    const SECRET: bool = true;
    fn parse(raw: &str) -> Result<SecretString, String> {
        Ok(SecretString::from(raw.to_string()))
    }
}

/// A file system path.
pub struct FsPath;
impl Kind for FsPath {
    type Out = PathBuf;
    const NAME: &'static str = "path";
    fn parse(raw: &str) -> Result<PathBuf, String> {
        if raw.trim().is_empty() {
            return Err("is empty; give a directory".into());
        }
        Ok(PathBuf::from(raw))
    }
}

/// `host:port` to listen on.
pub struct Addr;
impl Kind for Addr {
    type Out = SocketAddr;
    const NAME: &'static str = "address `ip:port`";
    fn parse(raw: &str) -> Result<SocketAddr, String> {
        raw.trim()
            .parse()
            .map_err(|_| "is not an address to listen on; write ip:port, e.g. 0.0.0.0:8080".into())
    }
}

/// `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case).
pub struct Bool;
impl Kind for Bool {
    type Out = bool;
    const NAME: &'static str = "`true` or `false`";
    fn parse(raw: &str) -> Result<bool, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("is not true or false".into()),
        }
    }
}

/// A whole number (`100000`; `_` between digits allowed).
pub struct Int<T>(PhantomData<T>);
impl<T: std::str::FromStr> Kind for Int<T> {
    type Out = T;
    const NAME: &'static str = "integer";
    fn parse(raw: &str) -> Result<T, String> {
        raw.trim()
            .replace('_', "")
            .parse()
            .map_err(|_| "is not a whole number".into())
    }
}

/// A number of bytes: `100 MiB`, `5 GB`, `1.5GiB` or a plain number of bytes.
/// Parsed by `bytesize` (units any case; `KB` = 1000, `KiB` = 1024).
pub struct Size;
impl Kind for Size {
    type Out = u64;
    const NAME: &'static str = "size (`100 MiB`, `5 GB`; plain number: bytes)";
    fn parse(raw: &str) -> Result<u64, String> {
        let raw = raw.trim().replace('_', "");
        raw.parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|_| "is not a size; write e.g. 100 MiB, 5 GB or a number of bytes".into())
    }
}

/// A duration: `30s`, `15m`, `2h`, `7d`, `1h 30m`, `250ms` or a plain number of
/// seconds. Parsed by `humantime`.
pub struct Dur;
impl Kind for Dur {
    type Out = Duration;
    const NAME: &'static str = "duration (`30s`, `15m`, `2h`, `7d`; plain number: seconds)";
    fn parse(raw: &str) -> Result<Duration, String> {
        let raw = raw.trim();
        if let Ok(secs) = raw.parse::<u64>() {
            return Ok(Duration::from_secs(secs));
        }
        humantime::parse_duration(raw).map_err(|_| {
            "is not a duration; write e.g. 30s, 15m, 2h, 7d or a number of seconds".into()
        })
    }
}

/// A list: comma-separated (`a,b`) or a TOML array (`["a", "b"]`); unset: empty.
pub struct List;
impl Kind for List {
    type Out = Vec<String>;
    const NAME: &'static str = "list (comma-separated, or a TOML array)";
    const UNSET: &'static str = "empty";
    fn parse(raw: &str) -> Result<Vec<String>, String> {
        let raw = raw.trim();
        if raw.starts_with('[') {
            #[derive(serde::Deserialize)]
            struct Wrapper {
                v: Vec<String>,
            }
            return toml::from_str::<Wrapper>(&format!("v = {raw}"))
                .map(|w| w.v)
                .map_err(|_| "is not a list; write a,b or [\"a\", \"b\"]".into());
        }
        Ok(raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    }
    fn unset() -> Option<Vec<String>> {
        Some(Vec::new())
    }
}

/// An optional value of kind `K`; unset, or set to the empty string: `None`.
pub struct Optional<K>(PhantomData<K>);
impl<K: Kind> Kind for Optional<K> {
    type Out = Option<K::Out>;
    const NAME: &'static str = K::NAME;
    const SECRET: bool = K::SECRET;
    const UNSET: &'static str = K::UNSET;
    fn parse(raw: &str) -> Result<Option<K::Out>, String> {
        if raw.trim().is_empty() {
            return Ok(None);
        }
        K::parse(raw).map(Some)
    }
    fn unset() -> Option<Self::Out> {
        Some(None)
    }
}

/// One of a fixed set of words, any case (`JSON` = `json`).
pub trait Choice: Sized + Copy + 'static {
    /// Each word and its value.
    const CHOICES: &'static [(&'static str, Self)];
    /// The docs' name of the kind.
    const NAME: &'static str;
}

/// The kind of a [`Choice`] enum.
pub struct OneOf<T>(PhantomData<T>);
impl<T: Choice> Kind for OneOf<T> {
    type Out = T;
    const NAME: &'static str = T::NAME;
    fn parse(raw: &str) -> Result<T, String> {
        let raw = raw.trim();
        T::CHOICES
            .iter()
            .find(|(word, _)| word.eq_ignore_ascii_case(raw))
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let words: Vec<&str> = T::CHOICES.iter().map(|(w, _)| *w).collect();
                format!("must be one of {}", words.join(", "))
            })
    }
}

/// Declares every setting once: its group and field with its Rust type, the kind that
/// parses it, its flat name, default, example, doc line and older names. Generates the
/// `Settings` structs, their `Default`s (each default parsed by its own kind) and the
/// `SCHEMA` table.
macro_rules! schema {
    ($(
        $(#[doc = $gdoc:literal])+
        $group:ident: $Group:ident {
            $(
                $(#[doc = $doc:literal])+
                $field:ident: $ty:ty as $kind:ty = $name:literal,
                    default $default:expr, example $example:literal
                    $(, alias $alias:literal in $unit:ident)?;
            )+
        }
    )+) => {
        /// Every setting of the service, grouped by the part of the system that reads
        /// it. See `docs/CONFIGURATION.md` (generated from `SCHEMA`).
        #[derive(Debug, Clone)]
        pub struct Settings {
            $( $(#[doc = $gdoc])+ pub $group: $Group, )+
        }

        impl Default for Settings {
            fn default() -> Self {
                Self { $( $group: $Group::default(), )+ }
            }
        }

        $(
            $(#[doc = $gdoc])+
            #[derive(Debug, Clone)]
            pub struct $Group {
                $( $(#[doc = $doc])+ pub $field: $ty, )+
            }

            impl Default for $Group {
                fn default() -> Self {
                    Self {
                        $( $field: $crate::config::schema::default_of::<$kind>($name, $default), )+
                    }
                }
            }
        )+

        /// Every setting, in the order of `docs/CONFIGURATION.md`.
        pub static SCHEMA: &[$crate::config::schema::Spec] = &[
            $( $( $crate::config::schema::Spec {
                name: $name,
                group: stringify!($group),
                kind: <$kind as $crate::config::schema::Kind>::NAME,
                secret: <$kind as $crate::config::schema::Kind>::SECRET,
                default: $default,
                unset: <$kind as $crate::config::schema::Kind>::UNSET,
                example: $example,
                doc: &[$($doc),+],
                aliases: &[$( $crate::config::schema::Alias {
                    name: $alias,
                    plain: $crate::config::schema::Plain::$unit,
                } )?],
                set: |s: &mut Settings, raw: &str| -> Result<(), String> {
                    s.$group.$field = <$kind as $crate::config::schema::Kind>::parse(raw)?;
                    Ok(())
                },
            }, )+ )+
        ];
    };
}
pub(crate) use schema;

/// `INTAKE_*` variables that are not settings but are read by other parts: the
/// command line (`--config`, the uploader's options) and the test suite.
const OTHER_VARIABLES: [&str; 6] = [
    "INTAKE_CONFIG",
    "INTAKE_SERVER",
    "INTAKE_EMAIL",
    "INTAKE_PASSWORD",
    "INTAKE_TOKEN",
    "INTAKE_STATE_DIR",
];
/// Prefixes of variables that are not settings (the test suite's).
const OTHER_PREFIXES: [&str; 1] = ["INTAKE_TEST_"];

/// The setting `name` (a flat name, any case) is, and the alias it was given by.
pub fn find(name: &str) -> Option<(&'static Spec, Option<&'static Alias>)> {
    let name = name.to_ascii_lowercase();
    SCHEMA.iter().find_map(|spec| {
        if spec.name == name {
            return Some((spec, None));
        }
        spec.aliases
            .iter()
            .find(|a| a.name == name)
            .map(|a| (spec, Some(a)))
    })
}

/// The setting whose name is closest to `name` (a typo), if one is close enough: within
/// two edits (Damerau-Levenshtein) or at least 0.9 alike (Jaro-Winkler), the most alike.
pub fn closest(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    let len = name.chars().count();
    // How often each ASCII character occurs in `name` (the names are ASCII).
    let mut letters = [0u32; 128];
    for b in name.bytes().filter(u8::is_ascii) {
        letters[usize::from(b)] = letters[usize::from(b)].saturating_add(1);
    }
    // Measuring is what makes a typo's message slow (a fuzzed file is mostly typos),
    // so a candidate that cannot pass is not measured. `common` is how many characters
    // it shares with `name` (repeats counted). Within two edits (each removes at most
    // one character and adds at most one), the lengths differ by at most two and all
    // but two characters of the longer are shared. At least 0.9 alike: Jaro is
    // (m/|a| + m/|b| + (m - t)/m) / 3, where the m matches pair equal characters, each
    // once, so m ≤ common, and Jaro < 0.75 when common/|a| + common/|b| < 1.2; the
    // prefix boost, at most 0.4 × (1 - Jaro), then leaves Jaro-Winkler under 0.9.
    let near = |n: usize, common: usize| len.abs_diff(n) <= 2 && common + 2 >= len.max(n);
    let alike = |n: usize, common: usize| 5 * common * (len + n) >= 6 * len * n;
    SCHEMA
        .iter()
        .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().map(|a| a.name)))
        .map(|candidate| (candidate, shared(&letters, candidate)))
        .filter(|(candidate, common)| {
            near(candidate.len(), *common) || alike(candidate.len(), *common)
        })
        .map(|(candidate, common)| {
            let score = strsim::jaro_winkler(&name, candidate);
            (candidate, common, score)
        })
        .filter(|(candidate, common, score)| {
            *score >= 0.9
                || (near(candidate.len(), *common)
                    && strsim::damerau_levenshtein(&name, candidate) <= 2)
        })
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(candidate, ..)| candidate)
        // An old name resolves to the setting it stands for.
        .map(|c| find(c).map_or(c, |(spec, _)| spec.name))
}

/// How many characters of the ASCII `candidate` the counts `letters` hold (repeats
/// counted).
fn shared(letters: &[u32; 128], candidate: &str) -> usize {
    let mut used = [0u32; 128];
    candidate
        .bytes()
        .filter(|b| {
            let i = usize::from(b & 0x7f);
            used[i] += 1;
            b.is_ascii() && used[i] <= letters[i]
        })
        .count()
}

/// Where a value came from, for messages.
enum Origin<'a> {
    File(&'a Path),
    Env,
}

/// Defaults, then `file` (its path, which messages name, and its text: TOML, flat
/// keys), then the `INTAKE_*` variables of `env`. Returns the settings (not yet
/// validated) and the warnings to log once logging is up: variables that name no
/// setting, old names.
pub fn load(
    file: Option<(&Path, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Settings, Vec<String>), ConfigError> {
    let mut settings = Settings::default();
    let mut warnings = Vec::new();
    if let Some((path, text)) = file {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let why = e.message().to_string();
            ConfigError(format!(
                "config file {}: not valid TOML: {why}",
                path.display()
            ))
        })?;
        for (key, value) in table {
            let Some((spec, alias)) = find(&key) else {
                let hint = closest(&key).map_or(String::new(), |c| format!("; did you mean {c}?"));
                return Err(ConfigError(format!(
                    "config file {}: \"{key}\" is not a setting{hint} (see docs/CONFIGURATION.md)",
                    path.display()
                )));
            };
            let raw = match value {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            if let Some(alias) = alias {
                warnings.push(format!(
                    "config file {}: {} is the old name of {}; it still works",
                    path.display(),
                    alias.name,
                    spec.name
                ));
            }
            apply(&mut settings, spec, alias, &raw, Origin::File(path))?;
        }
    }
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("INTAKE_"))
        .collect();
    // Old names first, so that the current name wins when both are set.
    env.sort_by_key(|(k, _)| find(&k["INTAKE_".len()..]).is_none_or(|(_, a)| a.is_none()));
    for (var, raw) in env {
        let flat = &var["INTAKE_".len()..];
        match find(flat) {
            Some((spec, alias)) => {
                if alias.is_some() {
                    warnings.push(format!(
                        "{var} is the old name of INTAKE_{}; it still works",
                        spec.name.to_ascii_uppercase()
                    ));
                }
                apply(&mut settings, spec, alias, &raw, Origin::Env)?;
            }
            None if OTHER_VARIABLES.contains(&var.as_str())
                || OTHER_PREFIXES.iter().any(|p| var.starts_with(p)) => {}
            None => warnings.push(match closest(flat) {
                Some(c) => format!(
                    "{var} is not a setting; did you mean INTAKE_{}?",
                    c.to_ascii_uppercase()
                ),
                None => format!("{var} is not a setting (see docs/CONFIGURATION.md); ignored"),
            }),
        }
    }
    Ok((settings, warnings))
}

/// Parses `raw` for `spec` (converting an old name's plain number) and stores it;
/// the error names the variable or file key and, unless secret, the value.
fn apply(
    settings: &mut Settings,
    spec: &Spec,
    alias: Option<&Alias>,
    raw: &str,
    origin: Origin<'_>,
) -> Result<(), ConfigError> {
    let text = alias.map_or_else(|| raw.to_string(), |a| a.plain.convert(raw));
    (spec.set)(settings, &text).map_err(|why| {
        let shown = if spec.secret {
            "[redacted]".to_string()
        } else {
            format!("{:?}", super::truncated(raw, 80))
        };
        let name = alias.map_or(spec.name, |a| a.name);
        ConfigError(match origin {
            Origin::Env => format!("INTAKE_{}={shown} {why}", name.to_ascii_uppercase()),
            Origin::File(path) => format!("config file {}: {name} = {shown} {why}", path.display()),
        })
    })
}

/// An I/O error's reason without the `(os error N)` tail.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    }
}

/// The settings table of `docs/CONFIGURATION.md`, from `SCHEMA`.
pub fn markdown_table() -> String {
    let mut out =
        String::from("| variable | type | default | example | meaning |\n|---|---|---|---|---|\n");
    for spec in SCHEMA {
        let default = match spec.default {
            Some(d) => format!("`{d}`"),
            None => spec.unset.to_string(),
        };
        let mut meaning = spec
            .doc
            .iter()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" ");
        for alias in spec.aliases {
            meaning.push_str(&format!(
                " Old name `INTAKE_{}` (plain number: {}) still works.",
                alias.name.to_ascii_uppercase(),
                alias.plain.unit()
            ));
        }
        out.push_str(&format!(
            "| `INTAKE_{}` | {} | {default} | `{}` | {meaning} |\n",
            spec.name.to_ascii_uppercase(),
            spec.kind,
            spec.example,
        ));
    }
    out
}
