//! The top-level custom sections warden writes into a component (its
//! manifest, its signature), below the modules that read them.

/// The custom section that holds a component's signature
/// ([`crate::signature`]).
pub(crate) const SIGNATURE: &str = "warden:signature";

/// `component` without its top-level custom sections named in `names`
/// (nested modules and components are copied whole), and the data of the
/// sections taken out, in order.
pub(crate) fn without_top_level<'a>(
    component: &'a [u8],
    names: &[&str],
) -> Result<(Vec<u8>, Vec<&'a [u8]>), String> {
    use wasmparser::{Chunk, Parser, Payload};

    let mut out = Vec::with_capacity(component.len() + 1024);
    let mut removed = Vec::new();
    let mut parser = Parser::new(0);
    let mut offset = 0usize;
    loop {
        let (payload, consumed) = match parser
            .parse(&component[offset..], true)
            .map_err(|e| e.to_string())?
        {
            Chunk::Parsed { payload, consumed } => (payload, consumed),
            Chunk::NeedMoreData(_) => {
                return Err("unexpected end of file".into());
            }
        };
        let start = offset;
        let mut end = offset + consumed;
        match &payload {
            Payload::Version { encoding, .. } if *encoding != wasmparser::Encoding::Component => {
                return Err(
                    "this is a core wasm module, not a component; build it for wasm32-wasip2 (or run `wasm-tools component new`) first".into(),
                );
            }
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => {
                // Copy nested modules and components whole without descending:
                // the outer parser resumes after them.
                end = unchecked_range.end;
            }
            _ => {}
        }
        match &payload {
            Payload::CustomSection(s) if names.contains(&s.name()) => {
                removed.push(s.data());
            }
            _ => out.extend_from_slice(&component[start..end]),
        }
        offset = end;
        if let Payload::End(_) = payload {
            break;
        }
    }
    Ok((out, removed))
}
