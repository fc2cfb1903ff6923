//! Shared pieces of rdk's example and benchmark programs.
#![deny(missing_docs)]
