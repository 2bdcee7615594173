//! `zookeeper-server-start zookeeper.properties`: placeholder until the
//! config crate lands.

fn main() {}
