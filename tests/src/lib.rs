//! Cross-crate test suites for rdk; the suites live in `tests/tests/`.
#![deny(missing_docs)]
