//! The same objects give a byte-identical plan whatever the file names, the split
//! into files and directories, the document order, and whether items sit in a `kind: List`.

use std::fs;

use netpold::{compile::compile, load::load_dir, render::render};

mod common;
use common::{NODE, Rng, scenario};

fn documents(yaml: &str) -> Vec<String> {
    yaml.split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Indents a document to sit as one item of a List.
fn as_list_item(doc: &str) -> String {
    let mut out = String::new();
    for (i, line) in doc.lines().enumerate() {
        out.push_str(if i == 0 { "- " } else { "  " });
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn plan_of(dir: &std::path::Path) -> String {
    let loaded = load_dir(dir).unwrap();
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    render(&compile(&loaded.model, NODE, "netpold"))
}

#[test]
fn plan_does_not_depend_on_files_or_order() {
    let mut rng = Rng(7);
    for n in 0..40 {
        let s = scenario(&mut rng);
        let docs = documents(&s.yaml);
        let reference_dir = tempfile::tempdir().unwrap();
        fs::write(reference_dir.path().join("all.yaml"), &s.yaml).unwrap();
        let expected = plan_of(reference_dir.path());

        for variant in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let mut shuffled = docs.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.below(i + 1));
            }
            let files = 1 + rng.below(shuffled.len());
            let mut contents: Vec<String> = vec![String::new(); files];
            let mut lists: Vec<Vec<String>> = vec![Vec::new(); files];
            for doc in &shuffled {
                let f = rng.below(files);
                if rng.chance(30) {
                    lists[f].push(as_list_item(doc));
                } else {
                    contents[f].push_str("---\n");
                    contents[f].push_str(doc);
                }
            }
            for (f, (mut text, items)) in contents.into_iter().zip(lists).enumerate() {
                if !items.is_empty() {
                    text.push_str("---\napiVersion: v1\nkind: List\nitems:\n");
                    text.push_str(&items.concat());
                }
                let sub = ["", "z/", "a/b/"][rng.below(3)];
                let ext = ["yaml", "yml"][rng.below(2)];
                let path = dir
                    .path()
                    .join(format!("{sub}{}-{f}.{ext}", rng.next() % 1000));
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, text).unwrap();
            }
            assert_eq!(
                plan_of(dir.path()),
                expected,
                "scenario {n} variant {variant} differs"
            );
        }
    }
}
