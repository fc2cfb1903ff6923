//! rdk-os-mock: the OS traits in memory, for deterministic tests with no hardware.
#![deny(missing_docs)]
