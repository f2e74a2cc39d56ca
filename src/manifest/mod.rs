//! Reading the manifest directory: which files count, in which order, and each
//! file's YAML documents as position-carrying trees. Knows nothing of kinds or fields.

pub mod node;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;
use node::{Node, Pos, Value};

/// A file holding manifests: `display` is how diagnostics name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub display: String,
    pub path: PathBuf,
}

/// One YAML document (or one item of a `kind: List`) of a file.
#[derive(Clone, Debug)]
pub struct RawObject {
    pub file: String,
    pub node: Node,
}

/// Upper bounds on what one file may hold, so a hostile or broken file costs
/// bounded memory and time; each is reported as an ordinary error.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Whether a directory entry's name marks editor or package-manager debris
/// that must never be loaded (CONTRACT §2).
pub fn is_ignored_name(name: &[u8]) -> bool {
    let ends = |suffix: &[u8]| name.ends_with(suffix);
    if name.is_empty() || name[0] == b'.' || ends(b"~") {
        return true;
    }
    if name.len() >= 2 && name[0] == b'#' && ends(b"#") {
        return true;
    }
    if [b".swp".as_slice(), b".swx", b".tmp", b".bak"]
        .iter()
        .any(|s| ends(s))
    {
        return true;
    }
    // `.dpkg-new`, `.dpkg-old`, `.rpmnew`, `.rpmsave` …, wherever they sit in the name.
    name.split(|&b| b == b'.')
        .skip(1)
        .any(|part| part.starts_with(b"dpkg-") || part.starts_with(b"rpm"))
}

pub fn has_manifest_extension(name: &[u8]) -> bool {
    [b".yaml".as_slice(), b".yml", b".json"]
        .iter()
        .any(|ext| name.len() > ext.len() && name.ends_with(ext))
}

/// Every manifest file below `dir`, recursively, in byte order of the relative
/// paths. Symlinked files are followed; symlinked directories are not (a link
/// loop or a link out of the tree must not change what is loaded).
/// Unreadable subdirectories are reported, not skipped silently.
pub fn scan_dir(dir: &Path) -> Result<(Vec<SourceFile>, Vec<Diagnostic>), std::io::Error> {
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    let mut found: Vec<(Vec<u8>, PathBuf)> = Vec::new();
    let mut problems = Vec::new();
    let mut pending: Vec<(PathBuf, Vec<u8>)> = vec![(dir.to_path_buf(), Vec::new())];
    while let Some((abs, rel)) = pending.pop() {
        let entries = match fs::read_dir(&abs) {
            Ok(entries) => entries,
            Err(e) => {
                problems.push(io_diag(&rel, &e));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    problems.push(io_diag(&rel, &e));
                    continue;
                }
            };
            let name = entry.file_name();
            let name = name.as_bytes();
            if is_ignored_name(name) {
                continue;
            }
            let mut child_rel = rel.clone();
            if !child_rel.is_empty() {
                child_rel.push(b'/');
            }
            child_rel.extend_from_slice(name);
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) => {
                    problems.push(io_diag(&child_rel, &e));
                    continue;
                }
            };
            if file_type.is_dir() {
                pending.push((entry.path(), child_rel));
            } else if has_manifest_extension(name) {
                // Symlinks are followed only to files; a dangling link is an error
                // because the operator evidently meant it to be loaded.
                if file_type.is_symlink() {
                    match fs::metadata(entry.path()) {
                        Ok(m) if m.is_dir() => continue,
                        Ok(_) => {}
                        Err(e) => {
                            problems.push(io_diag(&child_rel, &e));
                            continue;
                        }
                    }
                }
                // Messages, the daemon and its state directory name files by their
                // text; two names that differ only in invalid bytes would be one.
                if std::str::from_utf8(&child_rel).is_err() {
                    problems.push(Diagnostic::new(
                        String::from_utf8_lossy(&child_rel).into_owned(),
                        Pos { line: 1, col: 1 },
                        "the file name is not valid UTF-8; rename the file",
                    ));
                    continue;
                }
                found.push((child_rel, entry.path()));
            }
        }
    }
    found.sort();
    let files = found
        .into_iter()
        .map(|(rel, path)| SourceFile {
            display: String::from_utf8_lossy(&rel).into_owned(),
            path,
        })
        .collect();
    Ok((files, problems))
}

fn io_diag(rel: &[u8], e: &std::io::Error) -> Diagnostic {
    let display = if rel.is_empty() {
        ".".to_owned()
    } else {
        String::from_utf8_lossy(rel).into_owned()
    };
    Diagnostic::new(
        display,
        Pos { line: 1, col: 1 },
        format!("cannot read: {e}"),
    )
}

/// Reads one file and splits it into objects (documents, and items of `kind: List`).
/// Errors of the file go to `problems`; a file with any syntax error yields no objects.
pub fn read_file(file: &SourceFile, problems: &mut Vec<Diagnostic>) -> Vec<RawObject> {
    match read_bounded(&file.path, |_| Ok(())) {
        Ok((bytes, _)) => parse_bytes(&file.display, &bytes, problems),
        Err(message) => {
            problems.push(Diagnostic::new(
                &file.display,
                Pos { line: 1, col: 1 },
                message,
            ));
            Vec::new()
        }
    }
}

/// Reads a regular file of at most `MAX_FILE_BYTES`, with its metadata from before the
/// read; the error is a message for a diagnostic. Opened non-blocking and checked
/// after opening, so that a FIFO named like a manifest (or swapped in after a check)
/// cannot stall the reader, and a file growing while read costs bounded memory.
/// `check` sees the opened file's metadata before anything is read (StrictModes).
pub fn read_bounded(
    path: &Path,
    check: impl FnOnce(&fs::Metadata) -> Result<(), String>,
) -> Result<(Vec<u8>, fs::Metadata), String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: std::io::Error| format!("cannot read: {e}");
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    check(&meta)?;
    let too_big = |len: u64| format!("file is {len} bytes; the limit is {MAX_FILE_BYTES}");
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    Ok((bytes, meta))
}

/// Parses the bytes of one file. Public so tests and fuzzers can drive it without files.
pub fn parse_bytes(display: &str, bytes: &[u8], problems: &mut Vec<Diagnostic>) -> Vec<RawObject> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // Windows editors save "Unicode" as UTF-16 with a byte-order mark.
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        problems.push(Diagnostic::new(
            display,
            Pos { line: 1, col: 1 },
            "file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8",
        ));
        return Vec::new();
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let pos = pos_of_offset(bytes, e.valid_up_to());
            problems.push(Diagnostic::new(display, pos, "file is not valid UTF-8"));
            return Vec::new();
        }
    };
    let options = parser_options();
    let docs: Vec<Option<Node>> = match serde_saphyr::from_multiple_with_options(text, options) {
        Ok(docs) => docs,
        Err(e) => {
            let pos = e
                .location()
                .map(|l| Pos {
                    line: u32::try_from(l.line()).unwrap_or(u32::MAX),
                    col: u32::try_from(l.column()).unwrap_or(u32::MAX),
                })
                .filter(|p| p.line > 0)
                .unwrap_or(Pos { line: 1, col: 1 });
            problems.push(Diagnostic::new(display, pos, yaml_message(&e)));
            return Vec::new();
        }
    };
    let mut objects = Vec::new();
    for doc in docs.into_iter().flatten() {
        if doc.is_null() {
            continue;
        }
        expand_list(display, doc, &mut objects, problems);
    }
    objects.retain(|object| match oversized(&object.node) {
        Some((pos, message)) => {
            problems.push(Diagnostic::new(display, pos, message));
            false
        }
        None => true,
    });
    objects
}

/// Longest string (value or key) an object may hold, in bytes: Kubernetes' cap on all
/// of an object's annotations together, so any object the API server stores fits.
pub const MAX_STRING_BYTES: usize = 256 * 1024;
/// Most items of one list, or entries of one mapping, inside an object (the items of
/// a `kind: List` are objects of their own and not counted): far above any real
/// policy's rules, peers, ports or addresses, and a bound on what compiling costs.
pub const MAX_COLLECTION_ITEMS: usize = 10_000;

/// The first place where an object exceeds a size limit, with what is wrong there.
fn oversized(node: &Node) -> Option<(Pos, String)> {
    let mut pending = vec![node];
    while let Some(node) = pending.pop() {
        match &node.value {
            Value::Str(s) if s.len() > MAX_STRING_BYTES => {
                return Some((
                    node.pos,
                    format!(
                        "string is {} bytes long; the limit is {MAX_STRING_BYTES}",
                        s.len()
                    ),
                ));
            }
            Value::Seq(items) if items.len() > MAX_COLLECTION_ITEMS => {
                return Some((node.pos, too_many(items.len(), "items", "list")));
            }
            Value::Map(entries) if entries.len() > MAX_COLLECTION_ITEMS => {
                return Some((node.pos, too_many(entries.len(), "entries", "mapping")));
            }
            Value::Seq(items) => pending.extend(items.iter().rev()),
            Value::Map(entries) => {
                for (key, value) in entries.iter().rev() {
                    pending.push(value);
                    pending.push(key);
                }
            }
            _ => {}
        }
    }
    None
}

fn too_many(count: usize, what: &str, of: &str) -> String {
    format!("{of} has {count} {what}; the limit is {MAX_COLLECTION_ITEMS} (split the object)")
}

/// `kind: List` (as `kubectl get -o yaml` prints) contributes its items; any other
/// document is one object. Lists do not nest.
fn expand_list(display: &str, doc: Node, out: &mut Vec<RawObject>, problems: &mut Vec<Diagnostic>) {
    let is_list = doc.get("kind").and_then(Node::as_str) == Some("List");
    if !is_list {
        out.push(RawObject {
            file: display.to_owned(),
            node: doc,
        });
        return;
    }
    let Value::Map(entries) = doc.value else {
        return;
    };
    let mut items = None;
    for (key, value) in entries {
        match key.as_str() {
            Some("apiVersion") if value.as_str() == Some("v1") => {}
            Some("apiVersion") => problems.push(Diagnostic::new(
                display,
                value.pos,
                "apiVersion: a List must have apiVersion v1",
            )),
            Some("kind") | Some("metadata") => {}
            Some("items") => items = Some(value),
            // Worded as for every other object, which names the field as a path.
            _ => problems.push(Diagnostic::new(
                display,
                key.pos,
                match key.as_str() {
                    Some(name) => format!("{name}: unknown field"),
                    None => format!("field name {} is not a string", key_text(&key)),
                },
            )),
        }
    }
    let Some(items) = items else {
        problems.push(Diagnostic::new(
            display,
            doc.pos,
            "items: a List needs items",
        ));
        return;
    };
    match items.value {
        Value::Null => {}
        Value::Seq(items) => {
            for (i, item) in items.into_iter().enumerate() {
                if item.get("kind").and_then(Node::as_str) == Some("List") {
                    problems.push(Diagnostic::new(
                        display,
                        item.pos,
                        format!("items[{i}]: a List cannot contain a List"),
                    ));
                } else {
                    out.push(RawObject {
                        file: display.to_owned(),
                        node: item,
                    });
                }
            }
        }
        _ => problems.push(Diagnostic::new(
            display,
            items.pos,
            format!("items: expected a list, got {}", items.kind_name()),
        )),
    }
}

/// A mapping key as the user wrote it, for messages.
pub fn key_text(key: &Node) -> String {
    match &key.value {
        Value::Str(s) => format!("{s:?}"),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Null => "null".to_owned(),
        Value::Seq(_) | Value::Map(_) => "(a collection)".to_owned(),
    }
}

/// Parser limits sized for the largest scenario we support (50,000 endpoints in
/// one file) and far below what would exhaust memory: documents, nodes and
/// events scale with the 32 MiB file limit; nesting and aliases stay tight.
pub const MAX_DOCUMENTS: usize = 250_000;
pub const MAX_NESTING: usize = 64;
/// Nodes that aliases may copy in one file: aliases are rare in manifests, and
/// this keeps a "billion laughs" document to a few megabytes of work.
pub const MAX_ALIAS_EXPANSION: usize = 100_000;

fn parser_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = MAX_DOCUMENTS;
    budget.max_nodes = 16_000_000;
    budget.max_events = 40_000_000;
    budget.max_depth = MAX_NESTING;
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_EXPANSION;
    options
}

fn yaml_message(e: &serde_saphyr::Error) -> String {
    // The library's message carries its own "at line X column Y" suffix; the
    // position is already in front of ours, so keep only the first line sans suffix.
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    let first = match first.find(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    // A duplicate key's message ends in advice to the programmer, not to the user.
    let first = match first.find(", set DuplicateKeyPolicy") {
        Some(i) => &first[..i],
        None => first,
    };
    if let Some(detail) = first.strip_prefix("budget breached: ") {
        // The detail reads like `Aliases { aliases: 10001 }`.
        let what = detail
            .split([' ', '{'])
            .next()
            .unwrap_or(detail)
            .to_lowercase();
        let count: String = detail.chars().filter(char::is_ascii_digit).collect();
        return format!(
            "file exceeds the parser's limit on {what} ({count}); split it or simplify it"
        );
    }
    format!("invalid YAML: {first}")
}

fn pos_of_offset(bytes: &[u8], offset: usize) -> Pos {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::try_from(col).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<RawObject>, Vec<Diagnostic>) {
        let mut problems = Vec::new();
        let objects = parse_bytes("f.yaml", text.as_bytes(), &mut problems);
        (objects, problems)
    }

    #[test]
    fn ignored_names() {
        for name in [
            ".hidden.yaml",
            "a.yaml~",
            "a.yaml.swp",
            "a.swx",
            "a.tmp",
            "a.yaml.bak",
            "a.yaml.dpkg-new",
            "a.yaml.dpkg-old",
            "a.yaml.rpmnew",
            "a.yaml.rpmsave",
            "#a.yaml#",
        ] {
            assert!(is_ignored_name(name.as_bytes()), "{name}");
        }
        for name in ["a.yaml", "b.json", "c.yml", "dir", "#x.yaml"] {
            assert!(!is_ignored_name(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn file_names_that_are_not_utf8_are_refused_not_merged() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        for name in [&b"a\xfe.yaml"[..], b"a\xff.yaml", b"ok.yaml"] {
            fs::write(
                dir.path().join(std::ffi::OsStr::from_bytes(name)),
                "kind: A\n",
            )
            .unwrap();
        }
        let (files, problems) = scan_dir(dir.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.display.as_str()).collect();
        assert_eq!(names, ["ok.yaml"]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].to_string().contains("not valid UTF-8; rename"));
    }

    #[test]
    fn documents_lists_and_empty_documents() {
        let (objects, problems) = parse(
            "---\n---\nkind: A\n---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n- kind: B\n- kind: C\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let kinds: Vec<_> = objects
            .iter()
            .map(|o| o.node.get("kind").unwrap().as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds, ["A", "B", "C"]);
        assert_eq!(objects[2].node.pos.line, 11);
    }

    #[test]
    fn json_is_yaml() {
        let (objects, problems) = parse("{\n\t\"kind\": \"A\",\n\t\"n\": [1, 2]\n}\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(objects.len(), 1);
    }

    #[test]
    fn syntax_error_has_position() {
        let (objects, problems) = parse("a: 1\nb: [1, 2\nc: 3\n");
        assert!(objects.is_empty());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].pos.line >= 2, "{}", problems[0]);
        assert!(
            problems[0].message.starts_with("invalid YAML"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let (_, problems) = parse("a: 1\na: 2\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].pos.line, 2, "{}", problems[0]);
    }

    #[test]
    fn non_utf8_names_the_place() {
        let mut problems = Vec::new();
        parse_bytes("f.yaml", b"a: 1\nb: x\xff\n", &mut problems);
        assert_eq!(
            problems[0].to_string(),
            "f.yaml:2:5: error: file is not valid UTF-8"
        );
    }

    /// The one problem of `text`, which must yield no object.
    fn refused(text: &str) -> Diagnostic {
        let (objects, problems) = parse(text);
        assert!(objects.is_empty(), "{objects:?}");
        assert_eq!(problems.len(), 1, "{problems:?}");
        problems.into_iter().next().unwrap()
    }

    fn billion_laughs() -> String {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            let items = [prev.as_str(); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        }
        text
    }

    #[test]
    fn billion_laughs_is_refused_early() {
        let started = std::time::Instant::now();
        let p = refused(&billion_laughs());
        assert!(p.message.contains("alias"), "{p}");
        assert!(p.pos.line > 1, "{p}");
        // A few hundred thousand nodes at most, not 10^9.
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn a_few_aliases_are_fine() {
        let (objects, problems) = parse("kind: A\nfirst: &l {app: web}\nsecond: *l\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            objects[0]
                .node
                .get("second")
                .unwrap()
                .get("app")
                .unwrap()
                .as_str(),
            Some("web")
        );
    }

    #[test]
    fn nesting_is_limited() {
        let deep = |n: usize| format!("kind: A\nx: {}{}\n", "[".repeat(n), "]".repeat(n));
        let (_, problems) = parse(&deep(node::MAX_DEPTH - 1));
        assert!(problems.is_empty(), "{problems:?}");
        let p = refused(&deep(node::MAX_DEPTH));
        assert_eq!(p.pos.line, 2, "{p}");
        assert!(p.message.contains("nested deeper than 32 levels"), "{p}");
        let p = refused(&deep(MAX_NESTING + 1));
        assert!(p.message.contains("nested deeper"), "{p}");
    }

    #[test]
    fn nesting_through_aliases_is_limited() {
        // Each alias nests the previous anchor ten levels deeper: 100 levels in a
        // text whose own nesting is 11.
        let mut text = String::from("kind: A\na0: &a0 x\n");
        for i in 1..=10 {
            let open = "[".repeat(10);
            let close = "]".repeat(10);
            text.push_str(&format!("a{i}: &a{i} {open}*a{}{close}\n", i - 1));
        }
        let p = refused(&text);
        assert!(p.message.contains("nested deeper than 32 levels"), "{p}");
        assert!(p.pos.line > 1, "{p}");
    }

    #[test]
    fn document_count_is_limited() {
        let p = refused(&"---\n".repeat(MAX_DOCUMENTS + 1));
        assert!(p.message.contains("limit on documents"), "{p}");
    }

    #[test]
    fn long_strings_are_refused_where_they_are() {
        let long = "x".repeat(MAX_STRING_BYTES + 1);
        let p = refused(&format!(
            "kind: A\nmetadata:\n  annotations: {{a: {long}}}\n"
        ));
        assert_eq!((p.pos.line, p.pos.col), (3, 20), "{p}");
        assert_eq!(
            p.message,
            format!(
                "string is {} bytes long; the limit is {MAX_STRING_BYTES}",
                long.len()
            )
        );
        let p = refused(&format!("kind: A\n{long}: 1\n"));
        assert_eq!((p.pos.line, p.pos.col), (2, 1), "{p}");
        let (objects, _) = parse(&format!("kind: A\nx: {}\n", &long[1..]));
        assert_eq!(objects.len(), 1);
    }

    #[test]
    fn long_lists_and_mappings_are_refused() {
        let items = |n: usize| vec!["1"; n].join(", ");
        let p = refused(&format!(
            "kind: A\nspec:\n  ips: [{}]\n",
            items(MAX_COLLECTION_ITEMS + 1)
        ));
        assert_eq!((p.pos.line, p.pos.col), (3, 8), "{p}");
        assert!(
            p.message
                .starts_with("list has 10001 items; the limit is 10000"),
            "{p}"
        );
        let entries: Vec<String> = (0..=MAX_COLLECTION_ITEMS)
            .map(|i| format!("k{i}: v"))
            .collect();
        let p = refused(&format!("kind: A\nlabels: {{{}}}\n", entries.join(", ")));
        assert!(p.message.starts_with("mapping has 10001 entries"), "{p}");
        // The items of a List are objects of their own, not one object's list.
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n{}",
            "- {kind: A}\n".repeat(MAX_COLLECTION_ITEMS + 1)
        );
        let (objects, problems) = parse(&list);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(objects.len(), MAX_COLLECTION_ITEMS + 1);
    }

    #[test]
    fn file_size_is_limited_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        fs::File::create(&path)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let mut problems = Vec::new();
        let file = SourceFile {
            display: "big.yaml".to_owned(),
            path,
        };
        assert!(read_file(&file, &mut problems).is_empty());
        assert_eq!(
            problems[0].to_string(),
            format!(
                "big.yaml:1:1: error: file is {} bytes; the limit is {MAX_FILE_BYTES}",
                MAX_FILE_BYTES + 1
            )
        );
    }

    #[test]
    fn utf16_is_named() {
        for bom in [&b"\xFF\xFE"[..], b"\xFE\xFF"] {
            let mut problems = Vec::new();
            let text: Vec<u8> = [bom, b"k\0i\0n\0d\0"].concat();
            assert!(parse_bytes("f.yaml", &text, &mut problems).is_empty());
            assert_eq!(
                problems[0].to_string(),
                "f.yaml:1:1: error: file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"
            );
        }
    }

    #[test]
    fn nested_list_is_refused() {
        let (objects, problems) =
            parse("kind: List\napiVersion: v1\nitems:\n- kind: List\n  items: []\n");
        assert!(objects.is_empty());
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn scan_orders_by_bytes_and_skips_debris() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/sub")).unwrap();
        fs::create_dir_all(root.join(".git")).unwrap();
        for f in [
            "b/sub/z.yaml",
            "b/a.yml",
            "B.json",
            "a.yaml",
            "a.yaml~",
            ".git/x.yaml",
            "notes.txt",
        ] {
            fs::write(root.join(f), "").unwrap();
        }
        std::os::unix::fs::symlink(root.join("b"), root.join("linked-dir")).unwrap();
        std::os::unix::fs::symlink(root.join("a.yaml"), root.join("c.yaml")).unwrap();
        let (files, problems) = scan_dir(root).unwrap();
        assert!(problems.is_empty());
        let names: Vec<_> = files.iter().map(|f| f.display.as_str()).collect();
        assert_eq!(
            names,
            ["B.json", "a.yaml", "b/a.yml", "b/sub/z.yaml", "c.yaml"]
        );
    }
}
