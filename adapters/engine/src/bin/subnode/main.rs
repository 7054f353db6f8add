//! `subnode`: the fleet management CLI.

fn main() {}
