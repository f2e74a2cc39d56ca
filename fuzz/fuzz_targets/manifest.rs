//! The loader's per-file path, as `netpold check` takes it: bytes → YAML documents →
//! converted objects → the model's cross-object rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netpold::manifest;
use netpold::model::{Converted, Model};

fuzz_target!(|data: &[u8]| {
    let mut problems = Vec::new();
    let raw = manifest::parse_bytes("f.yaml", data, &mut problems);
    let converted: Vec<Converted> = raw.iter().map(Converted::new).collect();
    for c in &converted {
        // `object` is `None` exactly when the object has problems, and each names a place.
        assert_eq!(c.object.is_none(), !c.problems.is_empty(), "{c:?}");
        for p in &c.problems {
            assert!(p.pos.line >= 1 && p.pos.col >= 1, "{p}");
        }
    }
    let (_, model_problems) = Model::build(&raw);
    for p in problems.iter().chain(&model_problems) {
        assert_eq!(p.file, "f.yaml");
        assert!(p.pos.line >= 1 && p.pos.col >= 1, "{p}");
        assert!(!p.message.is_empty());
    }
});
