//! Workflow files: never a panic; a workflow that parses passes its own
//! checks, and its tasks have no cycle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_run::workflow::Workflow;

fuzz_target!(|text: &str| {
    if let Ok(workflow) = Workflow::parse(text, "fuzz.toml") {
        assert!(workflow.check().is_ok());
    }
});
