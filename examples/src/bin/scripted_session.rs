//! Placeholder, replaced by the scripted session demo.
fn main() {}
