//! Arbitrary bytes → (UTF-8) → `esdetect_eql::parse`. Must never panic; when a query parses, its normalised
//! printout (`Display`) must parse again to the same printout (the printer is the canonical form rules
//! and error messages show).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(query) = esdetect_eql::parse(text) else { return };
    let printed = query.to_string();
    let reparsed = match esdetect_eql::parse(&printed) {
        Ok(q) => q,
        Err(e) => panic!("printout of a parsed query does not parse: {printed:?}: {e:?}"),
    };
    assert_eq!(reparsed.to_string(), printed, "printout is not a fixed point for input {text:?}");
});
